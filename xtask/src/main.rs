//! `cargo run -p xtask`: the xtask command line inside the workspace (see the `xtask` library).
//! `cargo xtask` itself runs the same code built outside the workspace, from `xtask/cli`, so
//! that it works while the workspace does not load.

fn main() -> std::process::ExitCode {
    xtask::cli::main()
}
