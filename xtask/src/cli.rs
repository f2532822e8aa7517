//! The command line of `cargo xtask`: parses the arguments and runs a task.

use anyhow::{Context, Result, bail};

use super::scaffold::{Request, new_module};
use super::workspace::{Kind, Mode, module_crates, rel, root};
use super::{catalog, contract, fail_if_stale, stress, sync_all};

/// The help text.
pub const HELP: &str = "cargo xtask <task>

tasks:
  new-module command|view|automation NAME [--context CTX] [--view live|materialized]
        create modules/NAME (and modules/CTX-events if missing), register it with the host.
        CTX defaults to NAME's first `-` segment (todo-create-list -> todo).
  sync [--check]
        regenerate the host's module list (crates/fairway/Cargo.toml and src/modules.rs) and
        docs/catalog.md from modules/; --check only reports stale files (exit 1).
  catalog [--check]
        regenerate (or check) docs/catalog.md only.
  contract [--max-examples N] [--timeout SECS] [--seed N] [--bin PATH] [--schemathesis PATH]
        the API contract test: start the built target/debug/fairway on 127.0.0.1 (free port,
        temporary data dir), register a user, run schemathesis over every operation of its
        GET /openapi.json with the user's token (checks: no 5xx, responses match the schema);
        prints the cases run. Defaults: 25 examples per operation, 150 s. Never builds.
  ci
        run exactly the checks CI runs (.ci/checks: format, clippy, the tests, the fuzz smoke
        when a nightly toolchain is present), without CI's package installs.
  stress-tests [--runs N] [--burners N] [--no-disk] [-- CARGO TEST ARGS]
        run the whole test suite N times in a row (default 3) while N CPU burners (default 2)
        and a disk writer (fsync loop) run beside it; fails at the first failing run.
  help
        this text.";

fn check_flag(args: &[String]) -> Result<Mode> {
    match args {
        [] => Ok(Mode::Update),
        [flag] if flag == "--check" => Ok(Mode::Check),
        other => bail!("unexpected arguments {other:?}; run `cargo xtask help`"),
    }
}

/// Runs the task named by the process arguments; prints an error and fails on error.
pub fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    let Some((task, rest)) = args.split_first() else {
        println!("{HELP}");
        return Ok(());
    };
    match task.as_str() {
        "help" | "--help" | "-h" => println!("{HELP}"),
        "new-module" => {
            let mut positional = Vec::new();
            let mut context = None;
            let mut materialized = false;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                let view = if a == "--view" {
                    Some(
                        it.next()
                            .context("--view needs a value: live or materialized")?
                            .clone(),
                    )
                } else {
                    a.strip_prefix("--view=").map(str::to_owned)
                };
                if let Some(v) = view {
                    materialized = match v.as_str() {
                        "materialized" => true,
                        "live" => false,
                        other => bail!("unknown --view {other:?}: use live or materialized"),
                    };
                } else if a == "--context" {
                    context = Some(it.next().context("--context needs a value")?.clone());
                } else if let Some(v) = a.strip_prefix("--context=") {
                    context = Some(v.to_owned());
                } else if a.starts_with('-') {
                    bail!("unknown option {a:?}; run `cargo xtask help`");
                } else {
                    positional.push(a.clone());
                }
            }
            let [kind, name] = positional.as_slice() else {
                bail!(
                    "usage: cargo xtask new-module command|view|automation NAME [--context CTX] [--view live|materialized]"
                );
            };
            let kind = Kind::parse(kind)
                .filter(|k| k.is_module())
                .with_context(|| {
                    format!("unknown kind {kind:?}: use command, view or automation")
                })?;
            new_module(
                &root,
                &Request {
                    kind,
                    name: name.clone(),
                    context,
                    materialized,
                },
            )?;
        }
        "sync" => {
            let mode = check_flag(rest)?;
            let stale = sync_all(&root, mode)?;
            if mode == Mode::Check {
                fail_if_stale(&root, &stale)?;
                println!("generated files are up to date");
            } else if stale.is_empty() {
                println!("generated files were already up to date");
            } else {
                for f in stale {
                    println!("updated {}", rel(&root, &f));
                }
            }
        }
        "catalog" => {
            let mode = check_flag(rest)?;
            let crates = module_crates(&root)?;
            let stale = catalog::catalog(&root, &crates, mode)?;
            let path = root.join(catalog::CATALOG);
            match (mode, stale) {
                (Mode::Check, true) => fail_if_stale(&root, &[path])?,
                (_, false) => println!("{} is up to date", catalog::CATALOG),
                (Mode::Update, true) => println!("updated {}", catalog::CATALOG),
            }
        }
        "ci" => {
            if !rest.is_empty() {
                bail!("unexpected arguments {rest:?}; run `cargo xtask help`");
            }
            let status = std::process::Command::new("bash")
                .arg(root.join(".ci/checks"))
                .current_dir(&root)
                .status()
                .context("cannot run bash .ci/checks")?;
            if !status.success() {
                bail!(".ci/checks failed ({status})");
            }
        }
        "stress-tests" => stress::run(&root, &stress::parse(rest)?)?,
        "contract" => contract::run(&root, &contract::parse(rest)?)?,
        stress::LOAD_TASK => stress::load_process(rest)?,
        other => bail!("unknown task {other:?}; run `cargo xtask help`"),
    }
    Ok(())
}
