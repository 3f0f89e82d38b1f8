//! Writes spec/vectors/credentials.json (deterministic: fixed seeds, fixed times).
//! Run from anywhere: `cargo run -p roam-vc --example gen-vectors`.

#[path = "../tests/support/gen.rs"]
mod generator;

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let value = generator::file();
    let text = serde_json::to_string_pretty(&value)? + "\n";
    std::fs::write(root.join(generator::PATH), text)?;
    println!("wrote {}", generator::PATH);
    Ok(())
}
