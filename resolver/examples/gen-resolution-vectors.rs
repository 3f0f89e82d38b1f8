//! Writes `spec/vectors/resolution.json` (deterministic: fixed seeds, fixed times).
//! Run from anywhere: `cargo run -p roam-resolver --example gen-resolution-vectors`.

#[path = "../tests/support/attest.rs"]
mod attest;
#[path = "../tests/support/resolution_vectors.rs"]
mod generator;

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let value = generator::generate();
    let text = serde_json::to_string_pretty(&value)? + "\n";
    std::fs::write(root.join(generator::PATH), text)?;
    let n = value["vectors"].as_array().map_or(0, Vec::len);
    println!("wrote {} ({n} vectors)", generator::PATH);
    Ok(())
}
