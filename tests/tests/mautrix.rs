//! A second real, independently written Matrix client (mautrix-python with its olm crypto)
//! runs tests/mautrix/test_secrets_backup.py against the homeserver: secret storage bootstrap
//! (SSSS key, cross-signing keys and the backup key stored encrypted in account data) and key
//! backup (a version, megolm session keys uploaded at all three scopes), then a second device
//! opens secret storage with the passphrase, takes over the cross-signing identity and restores
//! the backup, and its session keys equal the uploaded ones.
//!
//! The Python side is installed into `.venv` by `.ci/setup-python.sh` (the README's test
//! command, `bash scripts/test.sh`, runs it first). Without it the test fails with a message
//! saying so: it never passes by skipping.
//! By hand: `bash .ci/setup-python.sh && cargo test -p roam-tests --test mautrix -- --nocapture`,
//! or against any running server:
//! `.venv/bin/python tests/mautrix/test_secrets_backup.py http://127.0.0.1:8008`.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mautrix_secret_storage_and_key_backup_restore_on_a_second_device() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    let probe = Command::new(&python)
        .args(["-c", "import mautrix.crypto, olm"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "mautrix with olm is not importable from {}: run `bash .ci/setup-python.sh` (or the \
             README's test command, `bash scripts/test.sh`)\n{}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "{} is missing ({e}): run `bash .ci/setup-python.sh` (or the README's test command, \
             `bash scripts/test.sh`) to install mautrix",
            python.display()
        ),
    }
    let script = root.join("tests/mautrix/test_secrets_backup.py");
    common::run_client(
        python,
        script,
        "mautrix",
        "mautrix secret storage and key backup passed",
        ".ci/setup-python.sh",
    )
    .await;
}
