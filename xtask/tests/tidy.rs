//! Tidy checks of the whole workspace, run by plain `cargo test`: what module crates may depend
//! on (read from `cargo metadata`), `//!` headers on every crate root, a test in every module,
//! no ambient clock or entropy in modules, no ignored tests anywhere. Each failure names the
//! file and what to do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use xtask::catalog::rust_files;
use xtask::workspace::{rel, root};

/// Crates every module and events crate may depend on, besides its context's events crate.
const ALLOWED: &[&str] = &[
    "fairway-runtime",
    "dcb-core",
    "serde",
    "serde_json",
    "thiserror",
    "axum",
    "tokio",
    "tracing",
    "uuid",
    "schemars",
];

/// Extra crates of the users context: password hashing, token signing (JWT over HMAC-SHA256),
/// login throttling and email normalisation (NFKC, format characters, UTS #39 skeletons).
const ALLOWED_USERS: &[&str] = &[
    "argon2",
    "hmac",
    "sha2",
    "jsonwebtoken",
    "governor",
    "unicode-normalization",
    "unicode-properties",
    "unicode-security",
];

/// Store backends: the host picks one; modules only see the `EventStore` trait.
const BACKENDS: &[&str] = &["dcb-embedded", "dcb-kv", "dcb-fdb"];

/// What modules may not call: time and randomness come from the runtime's context.
const AMBIENT: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "Utc::now",
    "Local::now",
    "thread_rng",
    "rand::random",
    "rand::rng",
];

fn metadata() -> Value {
    let root = root();
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed (does the workspace load?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

fn packages(meta: &Value) -> Vec<&Value> {
    meta["packages"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn manifest_dir(pkg: &Value) -> PathBuf {
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap_or_default());
    manifest.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Packages under `modules/`, with their fairway kind and context.
fn module_packages(meta: &Value) -> Vec<(&Value, String, String)> {
    let modules = root().join("modules");
    packages(meta)
        .into_iter()
        .filter(|p| manifest_dir(p).starts_with(&modules))
        .map(|p| {
            let f = &p["metadata"]["fairway"];
            (
                p,
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["context"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn report(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}\n",
        problems.join("\n  - ")
    );
}

#[test]
fn module_crates_depend_only_on_allowed_crates() {
    let meta = metadata();
    let root = root();
    let mods = module_packages(&meta);
    let module_names: Vec<&str> = mods
        .iter()
        .filter_map(|(p, _, _)| p["name"].as_str())
        .collect();
    let mut problems = Vec::new();
    for (pkg, kind, context) in &mods {
        let name = pkg["name"].as_str().unwrap_or_default();
        let manifest = rel(&root, &manifest_dir(pkg).join("Cargo.toml"));
        if kind.is_empty() || context.is_empty() {
            problems.push(format!(
                "{manifest}: add [package.metadata.fairway] with `kind` (command, view, automation \
                 or events) and `context`"
            ));
            continue;
        }
        let own_events = format!("{context}-events");
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let allowed = ALLOWED.contains(&dep_name)
                || (dep_name == own_events && name != own_events)
                || (context == "users" && ALLOWED_USERS.contains(&dep_name));
            if allowed {
                continue;
            }
            let why = if BACKENDS.contains(&dep_name) {
                "a store backend: modules see only the `EventStore` trait through the Runtime; \
                 the host picks the backend"
                    .to_owned()
            } else if dep_name.ends_with("-events") && module_names.contains(&dep_name) {
                format!(
                    "another context's events crate: a module of `{context}` may use only \
                     `{own_events}`; share through events, not code"
                )
            } else if module_names.contains(&dep_name) {
                format!(
                    "another module: modules never depend on each other; move what they share \
                     into `{own_events}`"
                )
            } else {
                format!(
                    "not on the allowlist ({}, the context's events crate{}); use an allowed \
                     crate, or change the contract in docs/modules.md and ALLOWED in \
                     xtask/tests/tidy.rs",
                    ALLOWED.join(", "),
                    if context == "users" {
                        format!(", and for users {}", ALLOWED_USERS.join(", "))
                    } else {
                        String::new()
                    }
                )
            };
            problems.push(format!(
                "{manifest}: `{name}` depends on `{dep_name}`, {why}"
            ));
        }
    }
    report("module crates depend on crates they may not use", problems);
}

fn first_code_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
}

#[test]
fn every_crate_root_opens_with_a_doc_comment() {
    let meta = metadata();
    let root = root();
    let mut problems = Vec::new();
    let mut roots = Vec::new();
    for pkg in packages(&meta) {
        for target in pkg["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if kinds
                .iter()
                .any(|k| ["lib", "bin", "proc-macro", "rlib"].contains(k))
            {
                roots.push(PathBuf::from(
                    target["src_path"].as_str().unwrap_or_default(),
                ));
            }
        }
    }
    roots.push(root.join("xtask/cli/main.rs"));
    for file in roots {
        let Ok(text) = fs::read_to_string(&file) else {
            problems.push(format!("{}: cannot be read", rel(&root, &file)));
            continue;
        };
        if !first_code_line(&text).starts_with("//!") {
            problems.push(format!(
                "{}: open the file with a `//!` paragraph: the crate's one job, its layer, and \
                 what it must not depend on",
                rel(&root, &file)
            ));
        }
    }
    report("crate roots without a `//!` header", problems);
}

fn has_test(files: &[PathBuf]) -> bool {
    files.iter().any(|f| {
        fs::read_to_string(f).is_ok_and(|s| s.contains("#[test]") || s.contains("#[tokio::test"))
    })
}

#[test]
fn every_module_has_a_test() {
    let meta = metadata();
    let root = root();
    let mut problems = Vec::new();
    for (pkg, kind, _) in module_packages(&meta) {
        if kind == "events" {
            continue;
        }
        let dir = manifest_dir(pkg);
        let mut files = rust_files(&dir.join("src"));
        files.extend(rust_files(&dir.join("tests")));
        if !has_test(&files) {
            problems.push(format!(
                "{}: add a given/when/then test (fairway_runtime::testing) in src/ or tests/",
                rel(&root, &dir)
            ));
        }
    }
    report("modules without tests", problems);
}

/// The code part of a line: without a `//` comment (string contents are not parsed, which at
/// worst hides a call after a `//` inside a string literal).
fn code_part(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

#[test]
fn modules_do_not_read_the_ambient_clock_or_entropy() {
    let root = root();
    let mut problems = Vec::new();
    for file in rust_files(&root.join("modules")) {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let code = code_part(line);
            for call in AMBIENT.iter().filter(|c| code.contains(*c)) {
                problems.push(format!(
                    "{}:{}: `{call}`: take time from `ctx.now()` (or the runtime's `env()`), ids \
                     and randomness from `ctx.new_id()` / `ctx.random_u64()`",
                    rel(&root, &file),
                    n + 1
                ));
            }
        }
    }
    report("modules reading the ambient clock or entropy", problems);
}

#[test]
fn no_test_is_ignored() {
    let root = root();
    // Spelled in two parts so that this file does not match itself.
    let needle = ["#[", "ignore"].concat();
    let mut problems = Vec::new();
    for dir in ["crates", "modules", "xtask"] {
        for file in rust_files(&root.join(dir)) {
            if file.components().any(|c| c.as_os_str() == "target") {
                continue;
            }
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                let code = code_part(line).trim_start();
                if code.starts_with(&needle) {
                    problems.push(format!(
                        "{}:{}: remove the ignore attribute: make the test fast and reliable, or \
                         delete it",
                        rel(&root, &file),
                        n + 1
                    ));
                }
            }
        }
    }
    report("ignored tests", problems);
}

#[test]
fn the_code_parts_of_lines_drop_comments() {
    assert_eq!(code_part("let t = x; // SystemTime::now"), "let t = x; ");
    assert_eq!(first_code_line("\n\n//! doc\nuse x;"), "//! doc");
}
