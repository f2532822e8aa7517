//! `cargo xtask`: the xtask command line, built outside the workspace from the `xtask`
//! library's sources, so that it runs even when the workspace does not load.

#[path = "../src/lib.rs"]
#[allow(dead_code)]
mod xtask;

fn main() -> std::process::ExitCode {
    xtask::cli::main()
}
