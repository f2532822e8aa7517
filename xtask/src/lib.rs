//! `xtask`: the repository's chores, run as `cargo xtask <task>` — scaffolding micromodules
//! (`new-module`), keeping the generated files in step with `modules/` (`sync`: the host's module
//! list and `docs/catalog.md`; `catalog`), the API contract test against the built host
//! (`contract`, schemathesis), and, in its tests, the tidy checks of the workspace.
//!
//! Layer: tooling, outside the product. It reads the repository as files (manifests, sources,
//! `cargo metadata`) and must not depend on any workspace crate: it has to work while they do not
//! compile. Generated files are check-or-update: `--check` (and `cargo test -p xtask`) fails
//! with "run `cargo xtask sync`" when they are stale.

pub mod catalog;
pub mod cli;
pub mod contract;
pub mod scaffold;
pub mod source;
pub mod stress;
pub mod sync;
pub mod templates;
pub mod workspace;

use std::path::{Path, PathBuf};

use anyhow::Result;

use workspace::{Mode, module_crates};

/// The message a stale generated file produces.
pub const STALE: &str = "run `cargo xtask sync`";

/// Brings every generated file up to date with `modules/` (or checks them): the host's two
/// generated regions and the catalog. Returns the stale files.
pub fn sync_all(root: &Path, mode: Mode) -> Result<Vec<PathBuf>> {
    let crates = module_crates(root)?;
    let mut stale = sync::sync_host(root, &crates, mode)?;
    if catalog::catalog(root, &crates, mode)? {
        stale.push(root.join(catalog::CATALOG));
    }
    Ok(stale)
}

/// Fails with [`STALE`] and the stale files' names when `stale` is not empty.
pub fn fail_if_stale(root: &Path, stale: &[PathBuf]) -> Result<()> {
    if stale.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = stale.iter().map(|p| workspace::rel(root, p)).collect();
    anyhow::bail!("generated files are stale: {}; {STALE}", names.join(", "))
}
