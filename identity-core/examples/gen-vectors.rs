//! Writes Roam's own vectors to spec/vectors/ (deterministic: fixed seeds, fixed times).
//! Run from anywhere: `cargo run -p roam-identity-core --example gen-vectors`.

#[path = "../tests/support/gen.rs"]
mod generator;

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (path, value) in generator::all() {
        let text = serde_json::to_string_pretty(&value)? + "\n";
        std::fs::write(root.join(path), text)?;
        let n = value["vectors"].as_array().map_or(0, Vec::len);
        println!("wrote {path} ({n} vectors)");
    }
    Ok(())
}
