//! What identity-core's integration tests share: reading the committed vector files, the
//! check every invalid vector gets, and the generator of Roam's own vectors ([`generator`]).

#![allow(dead_code)]

use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[path = "gen.rs"]
pub mod generator;

/// A path relative to the repository root.
pub fn repo_path(rel: impl AsRef<Path>) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The bytes of a file of the repository.
pub fn read_bytes(rel: impl AsRef<Path>) -> Vec<u8> {
    let path = repo_path(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A JSON file of the repository.
pub fn load(rel: impl AsRef<Path>) -> Value {
    let rel = rel.as_ref();
    serde_json::from_slice(&read_bytes(rel))
        .unwrap_or_else(|e| panic!("parsing {}: {e}", rel.display()))
}

/// The `vectors` array of a vector file.
pub fn vectors(file: &Value) -> &Vec<Value> {
    file["vectors"].as_array().expect("vectors array")
}

/// The name of a vector, for assertion messages.
pub fn name(v: &Value) -> &str {
    v["name"].as_str().unwrap()
}

/// An invalid vector's outcome: an error of the class the vector names. Returns the error for
/// further checks.
pub fn expect_error<T, E: Display>(
    v: &Value,
    result: Result<T, E>,
    class: fn(&E) -> &'static str,
) -> E {
    let name = name(v);
    let Err(err) = result else {
        panic!("{name}: expected an error")
    };
    assert_eq!(
        class(&err),
        v["error"]["class"].as_str().unwrap(),
        "{name}: {err}"
    );
    err
}
