//! `cargo xtask`: repository chores (scaffolding modules, generated files, benchmarks).
//! Depends on nothing of the workspace's runtime crates.

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "" | "help" | "--help" => {
            println!("cargo xtask <task>\n\ntasks: help");
            Ok(())
        }
        other => anyhow::bail!("unknown task {other:?}; run `cargo xtask help`"),
    }
}
