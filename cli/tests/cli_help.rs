//! Every `roam` command exists as written in the issue, answers `--help`, and read commands
//! take `--json`. Drives the built binary.

use std::process::Command;

fn roam(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roam"))
        .args(args)
        .env_remove("ROAM_KEYSTORE")
        .output()
        .expect("run roam")
}

/// (command path, flags its help must mention)
const COMMANDS: &[(&[&str], &[&str])] = &[
    (
        &["key", "new"],
        &["--keystore", "--recovery", "--no-phrase", "--json"],
    ),
    (
        &["account", "create"],
        &["--keystore", "--homeserver", "--user", "--password"],
    ),
    (&["account", "show"], &["--keystore", "--json"]),
    (&["login"], &["--keystore", "--homeserver"]),
    (&["device", "list"], &["--keystore", "--json"]),
    (&["device", "revoke"], &["DEVICE_ID", "--keystore"]),
    (
        &["migrate"],
        &["--keystore", "--to", "--user", "--keep-old-as-backup"],
    ),
    (&["servers", "set"], &["--keystore", "URL"]),
    (
        &["rotate"],
        &["--keystore", "--recovery", "--phrase", "--no-phrase"],
    ),
    (
        &["recover"],
        &["--keystore", "--recovery", "--phrase", "--no-phrase"],
    ),
    (&["claim"], &["USER_ID"]),
    (&["release"], &["USER_ID"]),
    (
        &["resolve"],
        &["USER_ID|DID", "--json", "--cache", "--offline"],
    ),
    (&["export"], &["--keystore", "--out"]),
    (&["import"], &["--in", "--homeserver"]),
    (&["lan", "serve"], &["--cache", "--listen"]),
    (&["lan", "peers"], &["--json"]),
    (&["serve"], &["--server-name", "--listen", "--data-dir"]),
    (&["admin"], &["token"]),
    (&["verify"], &["FILE", "--json", "--now", "--conformance"]),
];

#[test]
fn every_command_has_help_with_its_flags() {
    for (path, flags) in COMMANDS {
        let mut args: Vec<&str> = path.to_vec();
        args.push("--help");
        let out = roam(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "roam {} --help failed: {}",
            path.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("Usage: roam {}", path.join(" "))),
            "roam {} --help has no usage line:\n{stdout}",
            path.join(" ")
        );
        for flag in *flags {
            assert!(
                stdout.contains(flag),
                "roam {} --help does not mention {flag}:\n{stdout}",
                path.join(" ")
            );
        }
        // The global flags are accepted by every command.
        assert!(
            stdout.contains("--federation-override"),
            "roam {}: no --federation-override",
            path.join(" ")
        );
        assert!(
            stdout.contains("--allow-private-fetch"),
            "roam {}: no --allow-private-fetch",
            path.join(" ")
        );
        assert!(
            stdout.contains("--cache"),
            "roam {}: no --cache",
            path.join(" ")
        );
    }
}

#[test]
fn usage_errors_exit_2_and_bad_overrides_are_explained() {
    let out = roam(&["resolve"]);
    assert_eq!(out.status.code(), Some(2));
    let out = roam(&["--federation-override", "a.test", "resolve", "@a:a.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=URL"));
    let out = roam(&[
        "resolve",
        "not-a-user",
        "--cache",
        "/nonexistent/roam-test-cache",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a user ID nor a DID"));
    // The recovery phrase is never a flag value: --phrase takes none.
    for cmd in ["recover", "rotate"] {
        let out = roam(&[cmd, "--phrase=abandon ability able"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
    }
}

#[test]
fn server_names_the_url_layer_cannot_reach_are_usage_errors() {
    for subject in ["@a:x.1", "@a:x.0x10", "@a:A.example", "@a:a.example."] {
        let out = roam(&["resolve", subject, "--offline"]);
        assert_eq!(out.status.code(), Some(2), "{subject}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is neither a user ID nor a DID"),
            "{subject}: {err}"
        );
    }
}
