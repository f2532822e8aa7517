//! The repository as xtask sees it: its root, the crates under `modules/` and their
//! `[package.metadata.fairway]`, and check-or-update writes of generated files.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Environment variable that points xtask at another checkout (used by its own tests, which
/// work on a copy of the repository).
pub const ROOT_ENV: &str = "XTASK_ROOT";

/// The repository root: `$XTASK_ROOT` when set; else the nearest ancestor of the current
/// directory that holds `xtask/Cargo.toml` (where `cargo xtask` and `cargo test` run); else the
/// one of the manifest dir this code was built from (`xtask/` or `xtask/cli/`).
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os(ROOT_ENV) {
        return PathBuf::from(dir);
    }
    let is_root =
        |d: &Path| d.join("xtask").join("Cargo.toml").is_file() && d.join("Cargo.toml").is_file();
    if let Ok(cwd) = std::env::current_dir()
        && let Some(found) = cwd.ancestors().find(|d| is_root(d))
    {
        return found.to_path_buf();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| is_root(d))
        .unwrap_or(manifest)
        .to_path_buf()
}

/// What a crate under `modules/` is, from `[package.metadata.fairway] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Decides and appends events.
    Command,
    /// Answers queries from events.
    View,
    /// Reacts to events by running commands.
    Automation,
    /// A bounded context's shared events crate.
    Events,
}

impl Kind {
    /// Parses the metadata value (`"command"`, `"view"`, `"automation"`, `"events"`).
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "command" => Some(Kind::Command),
            "view" => Some(Kind::View),
            "automation" => Some(Kind::Automation),
            "events" => Some(Kind::Events),
            _ => None,
        }
    }

    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::View => "view",
            Kind::Automation => "automation",
            Kind::Events => "events",
        }
    }

    /// Whether the host serves it (every kind but `events`).
    pub fn is_module(self) -> bool {
        self != Kind::Events
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One crate under `modules/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleCrate {
    /// The package name (equal to the folder name).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its pattern.
    pub kind: Kind,
    /// Its bounded context.
    pub context: String,
}

impl ModuleCrate {
    /// The name as a Rust identifier (`todo-create-list` -> `todo_create_list`).
    pub fn ident(&self) -> String {
        self.name.replace('-', "_")
    }
}

/// Path of `path` relative to `root`, for messages.
pub fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Reads one crate's manifest and its `[package.metadata.fairway]`.
pub fn read_module(root: &Path, dir: &Path) -> Result<ModuleCrate> {
    let manifest = dir.join("Cargo.toml");
    let shown = rel(root, &manifest);
    let text = fs::read_to_string(&manifest).with_context(|| format!("cannot read {shown}"))?;
    let doc = text
        .parse::<toml_edit::Document<String>>()
        .with_context(|| format!("{shown} is not valid TOML"))?;
    let package = doc
        .get("package")
        .with_context(|| format!("{shown} has no [package] table"))?;
    let name = package
        .get("name")
        .and_then(|n| n.as_str())
        .with_context(|| format!("{shown} has no package name"))?
        .to_owned();
    let folder = dir.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    if folder != name {
        bail!(
            "{shown}: package `{name}` lives in folder `{folder}`; rename the folder to `{name}` \
             (a module's folder name is its crate name)"
        );
    }
    let fairway = package
        .get("metadata")
        .and_then(|m| m.get("fairway"))
        .with_context(|| {
            format!(
                "{shown} lacks [package.metadata.fairway]; add `kind = \"command\"` (or view, \
                 automation, events) and `context = \"...\"`"
            )
        })?;
    let kind_str = fairway
        .get("kind")
        .and_then(|k| k.as_str())
        .with_context(|| format!("{shown}: [package.metadata.fairway] has no `kind`"))?;
    let kind = Kind::parse(kind_str).with_context(|| {
        format!(
            "{shown}: unknown kind {kind_str:?} in [package.metadata.fairway]; use command, view, \
             automation or events"
        )
    })?;
    let context = fairway
        .get("context")
        .and_then(|c| c.as_str())
        .with_context(|| format!("{shown}: [package.metadata.fairway] has no `context`"))?
        .to_owned();
    Ok(ModuleCrate {
        name,
        dir: dir.to_path_buf(),
        kind,
        context,
    })
}

/// Every crate under `modules/` (folders holding a `Cargo.toml`), sorted by name.
pub fn module_crates(root: &Path) -> Result<Vec<ModuleCrate>> {
    let modules = root.join("modules");
    let mut out = Vec::new();
    if !modules.is_dir() {
        return Ok(out);
    }
    let entries =
        fs::read_dir(&modules).with_context(|| format!("cannot list {}", modules.display()))?;
    for entry in entries {
        let dir = entry?.path();
        if dir.is_dir() && dir.join("Cargo.toml").is_file() {
            out.push(read_module(root, &dir)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether a generated file is rewritten or only compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write the file when it differs.
    Update,
    /// Only report a difference.
    Check,
}

/// Brings `path` to `contents` (or, in [`Mode::Check`], only compares). Returns whether the file
/// was stale (missing or different).
pub fn ensure_file(path: &Path, contents: &str, mode: Mode) -> Result<bool> {
    let current = fs::read_to_string(path).ok();
    if current.as_deref() == Some(contents) {
        return Ok(false);
    }
    if mode == Mode::Update {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(true)
}

/// Formats Rust source with `rustfmt` (edition 2024), as `cargo fmt` would. Without rustfmt the
/// text is returned unchanged, with a warning.
pub fn rustfmt(source: &str) -> Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: cannot run rustfmt ({e}); generated Rust left unformatted");
            return Ok(source.to_owned());
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(source.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "rustfmt rejected generated code:\n{}\n---\n{source}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("rustfmt printed invalid UTF-8")
}
