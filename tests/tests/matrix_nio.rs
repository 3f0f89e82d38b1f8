//! A real, independently written Matrix client (matrix-nio with end-to-end encryption) runs
//! its flows against the homeserver: tests/matrix_nio/test_flow.py (register, keys, devices,
//! UIA) and tests/matrix_nio/test_sas.py (emoji verification between two devices over
//! to-device messages and `/sync`).
//!
//! The Python side is installed into `.venv` by `.ci/setup-python.sh` (the README's test
//! command, `bash scripts/test.sh`, runs it first). Without it the test fails with a message
//! saying so: it never passes by skipping.
//! By hand: `bash .ci/setup-python.sh && cargo test -p roam-tests --test matrix_nio -- --nocapture`,
//! or against any running server: `.venv/bin/python tests/matrix_nio/test_flow.py http://127.0.0.1:8008`.

mod common;

use std::path::PathBuf;

/// Runs one script of tests/matrix_nio/ against a fresh server; it must print `passed`.
async fn run_script(script: &str, passed: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        panic!(
            "{} is missing: run `bash .ci/setup-python.sh` (or the README's test command, \
             `bash scripts/test.sh`) to install matrix-nio",
            python.display()
        );
    }
    let script = root.join("tests/matrix_nio").join(script);
    common::run_client(python, script, "matrix-nio", passed, ".ci/setup-python.sh").await;
}

#[tokio::test]
async fn matrix_nio_client_flow() {
    run_script("test_flow.py", "matrix-nio flow passed").await;
}

/// Two devices of one user complete SAS (emoji) verification through to-device messages and
/// `/sync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_nio_sas_verification_between_two_devices() {
    run_script("test_sas.py", "matrix-nio SAS verification passed").await;
}
