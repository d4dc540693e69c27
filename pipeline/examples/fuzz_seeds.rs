//! Writes one valid input per fuzz target to `<dir>/<target>/seed`, the
//! starting corpus of `just fuzz` (which builds and runs it when the corpus
//! is missing): `target/release/examples/fuzz_seeds pipeline/fuzz/corpus`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "pipeline/fuzz/corpus".into());
    for (target, bytes) in videogpt_pipeline::fuzzing::seeds() {
        let folder = dir.join(target);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join("seed"), bytes)?;
    }
    println!("seeds written under {}", dir.display());
    Ok(())
}
