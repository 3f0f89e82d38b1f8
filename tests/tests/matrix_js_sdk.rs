//! A real, independently written Matrix client — matrix-js-sdk with its Rust crypto
//! (`initRustCrypto`, the matrix-sdk-crypto WebAssembly build) — runs
//! tests/js-sdk/flow.mjs against the homeserver: device 1 bootstraps cross-signing (answering
//! UIA with the password) and secret storage with a new recovery key and a new key backup,
//! imports a room key and backs it up; a new device with a fresh crypto store opens secret
//! storage with the recovery key, restores the backup and finds the same cross-signing
//! identity, its own device now cross-signed.
//!
//! The npm side is installed into tests/js-sdk/node_modules by `.ci/setup-node.sh` (`npm ci`
//! from the committed package-lock.json; the README's test command, `bash scripts/test.sh`,
//! runs it first). Without it the test fails with a message saying so: it never passes by
//! skipping.
//! By hand: `bash .ci/setup-node.sh && cargo test -p roam-tests --test matrix_js_sdk -- --nocapture`,
//! or against any running server: `node tests/js-sdk/flow.mjs http://127.0.0.1:8008`.

mod common;

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_js_sdk_cross_signing_secret_storage_and_key_backup() {
    common::run_client(
        PathBuf::from("node"),
        common::js_sdk_flow(),
        "matrix-js-sdk",
        "matrix-js-sdk flow passed",
        ".ci/setup-node.sh",
    )
    .await;
}
