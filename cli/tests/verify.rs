//! `roam verify` against the spec's own vectors, offline: a valid log and bundle give the
//! vectors' state and bindings, an invalid one exits 6 with the vector's class and index,
//! anything that is neither is a usage error; `--conformance` answers runner requests.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn roam(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roam"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roam");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn vectors(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../spec/vectors")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn vector<'a>(file: &'a Value, name: &str) -> &'a Value {
    file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn first(file: &Value, valid: bool, has_ops: bool) -> &Value {
    file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["valid"] == valid && (!has_ops || v["input"].get("ops").is_some()))
        .unwrap()
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn write(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn a_valid_log_gives_the_vectors_state() {
    let file = vectors("account-log.json");
    let now = file["now"].to_string();
    let v = first(&file, true, true);
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "log.json", &v["input"]["ops"]);
    let out = roam(&["verify", &path, "--json", "--now", &now], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_out(&out);
    assert_eq!(report["kind"], "log");
    assert_eq!(report["state"], v["expected"], "{report}");
    // The same log as `{"ops": [...]}` on standard input, in words.
    let body = serde_json::to_vec(&v["input"]).unwrap();
    let out = roam(&["verify", "-", "--now", &now], Some(&body));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("valid log: did:key:"),
        "{text}"
    );
}

#[test]
fn an_invalid_log_exits_6_with_its_class_and_index() {
    let file = vectors("account-log.json");
    let now = file["now"].to_string();
    let v = file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            v["valid"] == false
                && v["input"].get("ops").is_some()
                && v["error"].get("index").is_some()
        })
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "log.json", &v["input"]["ops"]);
    let out = roam(&["verify", &path, "--json", "--now", &now], None);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_out(&out);
    assert_eq!(report["valid"], false);
    assert_eq!(report["error"]["class"], v["error"]["class"], "{report}");
    assert_eq!(report["error"]["index"], v["error"]["index"], "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(v["error"]["class"].as_str().unwrap()),
        "{stderr}"
    );
}

#[test]
fn a_bundle_reports_bindings_and_hosting() {
    let file = vectors("bundles.json");
    let now = file["now"].to_string();
    let v = first(&file, true, false);
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "bundle.json", &v["input"]);
    let report = json_out(&roam(&["verify", &path, "--json", "--now", &now], None));
    assert_eq!(report["kind"], "bundle");
    assert_eq!(report["state"]["head"], v["expected"]["head"]);
    for u in v["expected"]["bound"].as_array().unwrap() {
        let u = u.as_str().unwrap();
        assert_eq!(report["bindings"][u]["status"], "current", "{report}");
    }
    for s in v["expected"]["hosting"].as_array().unwrap() {
        let s = s.as_str().unwrap();
        assert_eq!(report["hosting"][s]["status"], "current", "{report}");
    }
    // Long after every attestation expired, the same bundle says so.
    let later = (file["now"].as_u64().unwrap() + 10 * 365 * 86_400_000).to_string();
    let report = json_out(&roam(&["verify", &path, "--json", "--now", &later], None));
    let u = v["expected"]["bound"][0].as_str().unwrap();
    assert_eq!(report["bindings"][u]["status"], "expired", "{report}");
}

#[test]
fn what_is_not_a_roam_document_is_a_usage_error() {
    let out = roam(&["verify", "-"], Some(b"{\"hello\": 1}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a log, bundle or account export"));
    let out = roam(&["verify", "-", "--json"], Some(b"{\"a\": 1, \"a\": 2}"));
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(json_out(&out)["error"]["class"], "duplicate_key");
    let out = roam(&["verify", "/nonexistent/roam-verify.json"], None);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn conformance_answers_follow_the_runner_contract() {
    let file = vectors("did-key.json");
    let v = vector(&file, "too_long");
    let req = json!({"suite": "did-key", "now": null, "input": v["input"]});
    let out = roam(
        &["verify", "--conformance"],
        Some(&serde_json::to_vec(&req).unwrap()),
    );
    assert!(out.status.success());
    assert_eq!(
        json_out(&out),
        json!({"valid": false, "error": {"class": "too_long"}})
    );
    let out = roam(
        &["verify", "--conformance"],
        Some(b"{\"suite\": \"nope\", \"input\": 1}"),
    );
    assert_eq!(out.status.code(), Some(2));
}
