//! The committed generated files are fresh: the host's module list (`crates/fairway/Cargo.toml`
//! between the markers, `crates/fairway/src/modules.rs`) and `docs/catalog.md` match what
//! `cargo xtask sync` generates from `modules/`. When one fails: run `cargo xtask sync`.

use xtask::workspace::{Mode, module_crates, root};
use xtask::{catalog, fail_if_stale, sync};

#[test]
fn the_host_module_list_is_fresh() {
    let root = root();
    let crates = module_crates(&root).unwrap_or_else(|e| panic!("{e:#}"));
    let stale = sync::sync_host(&root, &crates, Mode::Check).unwrap_or_else(|e| panic!("{e:#}"));
    if let Err(e) = fail_if_stale(&root, &stale) {
        panic!("{e:#}");
    }
}

#[test]
fn the_catalog_is_fresh() {
    let root = root();
    let crates = module_crates(&root).unwrap_or_else(|e| panic!("{e:#}"));
    let stale = catalog::catalog(&root, &crates, Mode::Check).unwrap_or_else(|e| panic!("{e:#}"));
    if stale {
        let path = root.join(catalog::CATALOG);
        if let Err(e) = fail_if_stale(&root, &[path]) {
            panic!("{e:#}");
        }
    }
}
