//! `cargo xtask new-module command|view|automation NAME [--context CTX]`.
//!
//! Creates `modules/NAME` (a crate that compiles, with a `//!` header naming its pattern, a
//! `module()` export and given/when/then tests that pass as generated), creates the context's
//! events crate `modules/CTX-events` when it does not exist yet (with the example events the
//! skeleton uses), then runs `sync`. An existing events crate is never edited: when it lacks
//! the example events (they were replaced by the context's real ones), the skeleton gets its own
//! copy in `src/example_events.rs`, to be replaced by the context's events. Refuses an invalid or
//! taken name before writing anything.
//!
//! The default context is the name's first `-` segment (`todo-create-list` -> `todo`): name
//! modules `<context>-<slice>`, or pass `--context`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::sync::{host_manifest, replace_block};
use super::templates as t;
use super::workspace::{Kind, ModuleCrate, module_crates, read_module, rel, rustfmt};

/// Names a module may not take: the workspace's own crates, the crates modules depend on, and
/// names Cargo or Rust reserve.
const RESERVED: &[&str] = &[
    "xtask",
    "fairway",
    "fairway-runtime",
    "dcb-core",
    "dcb-kv",
    "dcb-embedded",
    "dcb-fdb",
    "serde",
    "thiserror",
    "axum",
    "tokio",
    "tracing",
    "uuid",
    "argon2",
    "hmac",
    "sha2",
    "base64",
    "test",
    "core",
    "std",
    "alloc",
    "proc-macro",
    "build",
    "deps",
    "examples",
    "incremental",
];

/// Rust keywords: a one-segment module name becomes a Rust identifier.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe",
    "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Checks a kebab-case name: lowercase ASCII segments, each starting with a letter.
pub fn check_kebab(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.split('-').all(|seg| {
            seg.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !ok {
        bail!(
            "invalid {what} {name:?}: use kebab-case, lowercase ASCII segments each starting with \
             a letter, at most 64 characters (e.g. `todo-create-list`)"
        );
    }
    Ok(())
}

/// `open-loans` -> `OpenLoans`.
pub fn pascal(name: &str) -> String {
    name.split('-')
        .map(|seg| {
            let mut c = seg.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The default context of a module name: its first `-` segment.
pub fn default_context(name: &str) -> &str {
    name.split('-').next().unwrap_or(name)
}

/// What `new-module` is asked to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// command, view or automation.
    pub kind: Kind,
    /// The crate name.
    pub name: String,
    /// The context (`None`: from the name).
    pub context: Option<String>,
    /// For a view: a materialized read model (`--view materialized`) instead of a live one.
    pub materialized: bool,
}

/// Everything `new-module` wrote, for the summary and for undoing on failure.
#[derive(Debug, Default)]
pub struct Created {
    /// The new module's directory.
    pub module_dir: PathBuf,
    /// The events crate's directory, when it was created.
    pub events_dir: Option<PathBuf>,
    /// The skeleton carries its own example events (`src/example_events.rs`) because the
    /// existing events crate has none.
    pub local_examples: bool,
    /// The context used.
    pub context: String,
    /// The events crate's name.
    pub events_name: String,
}

impl Created {
    fn undo(&self) {
        let _ = fs::remove_dir_all(&self.module_dir);
        if let Some(d) = &self.events_dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_owned();
    for (k, v) in vars {
        s = s.replace(k, v);
    }
    s
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Whether the root manifest declares `name` in `[workspace.dependencies]`.
pub fn declared_in_workspace(root: &Path, name: &str) -> bool {
    fs::read_to_string(root.join("Cargo.toml"))
        .ok()
        .and_then(|t| t.parse::<toml_edit::Document<String>>().ok())
        .is_some_and(|d| {
            d.get("workspace")
                .and_then(|w| w.get("dependencies"))
                .and_then(|deps| deps.get(name))
                .is_some()
        })
}

/// Validates the request against the tree; returns the context. Writes nothing.
pub fn validate(root: &Path, req: &Request, crates: &[ModuleCrate]) -> Result<String> {
    if !req.kind.is_module() {
        bail!("new-module creates a command, view or automation; events crates come with them");
    }
    if req.materialized && req.kind != Kind::View {
        bail!("--view materialized is for views only");
    }
    check_kebab("module name", &req.name)?;
    let context = req
        .context
        .clone()
        .unwrap_or_else(|| default_context(&req.name).to_owned());
    check_kebab("context", &context)?;
    if req.name.ends_with("-events") || req.name == "events" {
        bail!(
            "invalid module name {:?}: names ending in `-events` are reserved for a context's \
             events crate",
            req.name
        );
    }
    if RESERVED.contains(&req.name.as_str()) || KEYWORDS.contains(&req.name.as_str()) {
        bail!(
            "invalid module name {:?}: it is reserved (a workspace crate, a dependency, or a \
             name Cargo or Rust reserves); choose another",
            req.name
        );
    }
    for dir in [
        root.join("modules").join(&req.name),
        root.join("crates").join(&req.name),
    ] {
        if dir.exists() {
            bail!(
                "{} already exists: choose another name, or delete the folder and run `cargo \
                 xtask sync` first",
                rel(root, &dir)
            );
        }
    }
    if crates.iter().any(|c| c.name == req.name) {
        bail!("a crate named {:?} already exists under modules/", req.name);
    }
    let events_dir = root.join("modules").join(format!("{context}-events"));
    if events_dir.exists() {
        let ev = read_module(root, &events_dir)?;
        if ev.kind != Kind::Events || ev.context != context {
            bail!(
                "{} exists but is not the events crate of context `{context}` (its metadata says \
                 kind {}, context {}); fix its [package.metadata.fairway]",
                rel(root, &events_dir),
                ev.kind,
                ev.context
            );
        }
    }
    let manifest = host_manifest(root);
    let text = fs::read_to_string(&manifest).with_context(|| {
        format!(
            "cannot read the host manifest {}: the host crate must exist to register the module",
            rel(root, &manifest)
        )
    })?;
    replace_block(&text, "", &rel(root, &manifest))?;
    Ok(context)
}

/// Creates the module (and its events crate when needed). Does not sync the host.
pub fn create(root: &Path, req: &Request) -> Result<Created> {
    let crates = module_crates(root)?;
    let context = validate(root, req, &crates)?;
    let events_name = format!("{context}-events");
    let slice = req
        .name
        .strip_prefix(&format!("{context}-"))
        .unwrap_or(&req.name);
    let (p, ctxp, evi) = (
        pascal(slice),
        pascal(&context),
        events_name.replace('-', "_"),
    );
    let kind = req.kind.as_str();
    let vars = [
        ("__NAME__", req.name.as_str()),
        ("__CTXP__", ctxp.as_str()),
        ("__CTX__", context.as_str()),
        ("__P__", p.as_str()),
        ("__EVI__", evi.as_str()),
        ("__EV__", events_name.as_str()),
        ("__KIND__", kind),
    ];
    let mut created = Created {
        module_dir: root.join("modules").join(&req.name),
        context: context.clone(),
        events_name: events_name.clone(),
        ..Created::default()
    };
    let result = (|| -> Result<()> {
        let events_dir = root.join("modules").join(&events_name);
        let example = format!("struct {ctxp}ExampleRecorded");
        if !events_dir.exists() {
            created.events_dir = Some(events_dir.clone());
            write(
                &events_dir.join("Cargo.toml"),
                &fill(t::EVENTS_CARGO, &vars),
            )?;
            let lib = [t::EVENTS_LIB_HEAD, t::EXAMPLE_EVENTS, t::EVENTS_LIB_TESTS].concat();
            write(
                &events_dir.join("src/lib.rs"),
                &rustfmt(&fill(&lib, &vars))?,
            )?;
        } else {
            let has_example = super::catalog::rust_files(&events_dir.join("src"))
                .iter()
                .any(|f| fs::read_to_string(f).is_ok_and(|s| s.contains(&example)));
            created.local_examples = !has_example;
        }
        let (deps, lib, tests) = match req.kind {
            Kind::Command => (t::COMMAND_DEPS, t::COMMAND_LIB, t::COMMAND_TESTS),
            Kind::View if req.materialized => (
                t::VIEW_DEPS,
                t::MATERIALIZED_VIEW_LIB,
                t::MATERIALIZED_VIEW_TESTS,
            ),
            Kind::View => (t::VIEW_DEPS, t::VIEW_LIB, t::VIEW_TESTS),
            _ => (t::AUTOMATION_DEPS, t::AUTOMATION_LIB, t::AUTOMATION_TESTS),
        };
        let mut deps = deps.to_owned();
        if created.local_examples && !deps.contains("serde.workspace") {
            // The skeleton's own example events derive serde's traits.
            deps.push_str("serde.workspace = true\n");
        }
        let mut cargo = t::MODULE_CARGO.replace("__DEPS__", &deps);
        if declared_in_workspace(root, &events_name) {
            cargo = cargo.replace(
                "__EV__ = { path = \"../__EV__\" }",
                "__EV__.workspace = true",
            );
        }
        let dir = &created.module_dir;
        write(&dir.join("Cargo.toml"), &fill(&cargo, &vars))?;
        let lib = if created.local_examples {
            write(
                &dir.join("src/example_events.rs"),
                &rustfmt(&fill(
                    &[t::LOCAL_EXAMPLES_HEAD, t::EXAMPLE_EVENTS].concat(),
                    &vars,
                ))?,
            )?;
            lib.replace(
                "use __EVI__::{",
                "pub mod example_events;\nuse example_events::{",
            )
        } else {
            lib.to_owned()
        };
        write(&dir.join("src/lib.rs"), &rustfmt(&fill(&lib, &vars))?)?;
        write(&dir.join("src/tests.rs"), &rustfmt(&fill(tests, &vars))?)?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(created),
        Err(e) => {
            created.undo();
            Err(e)
        }
    }
}

/// `new-module`: creates, syncs (undoing the creation if the sync fails) and prints the next
/// steps.
pub fn new_module(root: &Path, req: &Request) -> Result<()> {
    let created = create(root, req)?;
    let stale = match super::sync_all(root, super::workspace::Mode::Update) {
        Ok(s) => s,
        Err(e) => {
            created.undo();
            // Leave the host as it was before.
            let _ = super::sync_all(root, super::workspace::Mode::Update);
            return Err(e.context("the module was not created"));
        }
    };
    let name = &req.name;
    let ctx = &created.context;
    let ev = &created.events_name;
    println!("Created modules/{name} ({}, context `{ctx}`):", req.kind);
    println!("  modules/{name}/Cargo.toml     [package.metadata.fairway] kind and context");
    println!(
        "  modules/{name}/src/lib.rs     the {} and its `module()`; its //! header feeds the catalog",
        req.kind
    );
    println!("  modules/{name}/src/tests.rs   given/when/then tests");
    if created.events_dir.is_some() {
        println!("Created modules/{ev}: the `{ctx}` context's events crate, with example events");
    } else if created.local_examples {
        println!(
            "  modules/{name}/src/example_events.rs   example events of its own: modules/{ev} has \
             none and is left as it is"
        );
    }
    for f in stale {
        println!("Updated {}", rel(root, &f));
    }
    if req.context.is_none() {
        println!(
            "Context `{ctx}` comes from the name's first segment; pass --context to choose another."
        );
    }
    println!();
    println!("Next:");
    println!("  1. cargo test -p {name}");
    if created.local_examples {
        println!(
            "  2. replace the skeleton's example events (src/example_events.rs) with events of modules/{ev}, then delete that file"
        );
    } else {
        println!(
            "  2. edit modules/{ev}/src/lib.rs: replace the example events with this context's real ones"
        );
    }
    println!(
        "  3. edit modules/{name}/src/lib.rs and src/tests.rs: the real rule, routes and events; keep the //! \
         header's given/when/then in step with the tests"
    );
    println!(
        "  4. cargo xtask sync   (after changing routes, events or headers: refreshes docs/catalog.md)"
    );
    println!("  5. cargo run -p fairway -- serve   (the host serves every module under modules/)");
    Ok(())
}
