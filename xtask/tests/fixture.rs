//! `sync`, `catalog` and `new-module` against a small fixture repository in a temporary
//! directory: a host manifest with the generated markers and a few module crates. Nothing is
//! compiled here (the workflow test does that on a copy of the real workspace).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use xtask::scaffold::{Request, create, new_module};
use xtask::sync::{BEGIN, END, host_manifest, host_modules_rs};
use xtask::workspace::{Kind, Mode, module_crates};
use xtask::{STALE, catalog, fail_if_stale, sync_all};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

fn manifest(name: &str, kind: &str, context: &str, deps: &str) -> String {
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[package.metadata.fairway]\nkind = \
         \"{kind}\"\ncontext = \"{context}\"\n\n[dependencies]\n{deps}"
    )
}

const EVENTS_LIB: &str = r#"//! `shop-events`: the shop's events.

use fairway_runtime::{DomainEvent, tag};

/// An order was placed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct OrderPlaced { pub order_id: String }

impl DomainEvent for OrderPlaced {
    const TYPE: &'static str = "OrderPlaced";
    fn tags(&self) -> Vec<String> { vec![tag("order", &self.order_id)] }
}
"#;

const PLACE_LIB: &str = r#"//! Command `shop-place-order`: places an order once.
//!
//! ```
//! # use hidden::Thing;
//! given(nothing).when(PlaceOrder).then([OrderPlaced]);
//! ```

fairway_runtime::event_set! { pub enum Reads { Placed(shop_events::OrderPlaced) } }

impl Command for PlaceOrder {
    type Events = Reads;
}

/// The module.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "shop-place-order")
        .describe("Places an order")
        .post("/orders/{id}", place)
        .command::<PlaceOrder>()
        .appends::<OrderPlaced>()
}
"#;

const ORDERS_LIB: &str = r#"//! View `shop-orders`: every order.

const NAME: &str = "orders";

impl MaterializedView for Orders {
    type Events = Reads;
    fn name(&self) -> &str { NAME }
}

fairway_runtime::event_set! { pub enum Reads { Placed(OrderPlaced) } }

/// The module.
pub fn module() -> Module {
    Module::new(ModuleKind::View, "shop-orders")
        .describe("Lists orders")
        .get("/orders", list)
        .materialized(Orders)
}
"#;

/// A fixture repository: host manifest with markers, an events crate and two modules.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(
        &root.join("crates/fairway/Cargo.toml"),
        &format!(
            "[package]\nname = \"fairway\"\n\n[dependencies]\nanyhow = \"1\"\n{BEGIN}\n\
             stale-module = {{ path = \"../../modules/stale-module\" }}\n{END}\ntokio = \"1\"\n"
        ),
    );
    write(
        &root.join("modules/shop-events/Cargo.toml"),
        &manifest("shop-events", "events", "shop", "serde = \"1\"\n"),
    );
    write(&root.join("modules/shop-events/src/lib.rs"), EVENTS_LIB);
    write(
        &root.join("modules/shop-place-order/Cargo.toml"),
        &manifest("shop-place-order", "command", "shop", ""),
    );
    write(&root.join("modules/shop-place-order/src/lib.rs"), PLACE_LIB);
    write(
        &root.join("modules/shop-orders/Cargo.toml"),
        &manifest("shop-orders", "view", "shop", ""),
    );
    write(&root.join("modules/shop-orders/src/lib.rs"), ORDERS_LIB);
    dir
}

/// Every file under `root` with its contents.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out
}

#[test]
fn sync_lists_modules_in_name_order_without_events_crates() {
    let dir = fixture();
    let root = dir.path();
    let stale = sync_all(root, Mode::Check).expect("check");
    assert_eq!(
        stale.len(),
        3,
        "host manifest, modules.rs and catalog are stale: {stale:?}"
    );
    let err = fail_if_stale(root, &stale).expect_err("stale");
    assert!(err.to_string().contains(STALE), "{err}");
    // Check mode writes nothing.
    assert!(!host_modules_rs(root).exists());

    sync_all(root, Mode::Update).expect("sync");
    let manifest = fs::read_to_string(host_manifest(root)).expect("manifest");
    assert_eq!(
        manifest,
        format!(
            "[package]\nname = \"fairway\"\n\n[dependencies]\nanyhow = \"1\"\n{BEGIN}\n\
             shop-orders = {{ path = \"../../modules/shop-orders\" }}\n\
             shop-place-order = {{ path = \"../../modules/shop-place-order\" }}\n{END}\ntokio = \"1\"\n"
        )
    );
    let list = fs::read_to_string(host_modules_rs(root)).expect("modules.rs");
    assert!(list.starts_with(
        "//! The modules this host serves. Generated by `cargo xtask sync` from `modules/`: do not edit.\n"
    ));
    assert!(list.contains("pub fn all() -> Vec<Module> {\n    vec![shop_orders::module(), shop_place_order::module()]\n}\n")
        || list.contains("        shop_orders::module(),\n        shop_place_order::module(),\n"),
        "{list}");
    assert!(!list.contains("shop_events"));
    assert!(sync_all(root, Mode::Check).expect("check").is_empty());
    assert!(
        sync_all(root, Mode::Update).expect("again").is_empty(),
        "sync is idempotent"
    );
}

#[test]
fn a_deleted_module_folder_disappears_from_the_host() {
    let dir = fixture();
    let root = dir.path();
    sync_all(root, Mode::Update).expect("sync");
    fs::remove_dir_all(root.join("modules/shop-orders")).expect("rm");
    let stale = sync_all(root, Mode::Update).expect("sync");
    assert_eq!(stale.len(), 3);
    let manifest = fs::read_to_string(host_manifest(root)).expect("manifest");
    assert!(!manifest.contains("shop-orders"));
    assert!(manifest.contains("shop-place-order"));
    let list = fs::read_to_string(host_modules_rs(root)).expect("list");
    assert!(!list.contains("shop_orders"));
    let cat = fs::read_to_string(root.join(catalog::CATALOG)).expect("catalog");
    assert!(!cat.contains("shop-orders"));
}

#[test]
fn missing_markers_are_named() {
    let dir = fixture();
    let root = dir.path();
    write(
        &host_manifest(root),
        "[package]\nname = \"fairway\"\n\n[dependencies]\n",
    );
    let err = sync_all(root, Mode::Update).expect_err("no markers");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("crates/fairway/Cargo.toml") && msg.contains(BEGIN),
        "{msg}"
    );
}

#[test]
fn a_crate_without_metadata_is_named() {
    let dir = fixture();
    let root = dir.path();
    write(
        &root.join("modules/odd/Cargo.toml"),
        "[package]\nname = \"odd\"\n",
    );
    let msg = format!(
        "{:#}",
        sync_all(root, Mode::Update).expect_err("no metadata")
    );
    assert!(
        msg.contains("modules/odd/Cargo.toml") && msg.contains("[package.metadata.fairway]"),
        "{msg}"
    );
}

#[test]
fn the_catalog_resolves_reads_appends_routes_and_workers() {
    let dir = fixture();
    let root = dir.path();
    let crates = module_crates(root).expect("crates");
    let events = crates.iter().find(|c| c.kind == Kind::Events);
    let place = crates
        .iter()
        .find(|c| c.name == "shop-place-order")
        .expect("place");
    let e = catalog::entry(root, place, events).expect("entry");
    assert_eq!(e.kind, "command");
    assert_eq!(e.description, "Places an order");
    assert_eq!(e.routes, [("POST".to_owned(), "/orders/{id}".to_owned())]);
    assert_eq!(e.reads, ["OrderPlaced"]);
    assert_eq!(e.appends, ["OrderPlaced"]);
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    assert!(e.header.contains("```rust\ngiven(nothing)"), "{}", e.header);
    assert!(
        !e.header.contains("hidden"),
        "rustdoc's hidden lines are dropped"
    );
    let orders = crates
        .iter()
        .find(|c| c.name == "shop-orders")
        .expect("orders");
    let e = catalog::entry(root, orders, events).expect("entry");
    assert_eq!(e.workers, ["view:orders"]);
    assert_eq!(e.reads, ["OrderPlaced"]);

    let text = catalog::render(root, &crates).expect("render");
    assert!(
        text.contains("| `OrderPlaced` | shop-place-order | shop-orders, shop-place-order |"),
        "{text}"
    );
    assert!(catalog::catalog(root, &crates, Mode::Check).expect("check"));
    assert!(catalog::catalog(root, &crates, Mode::Update).expect("write"));
    assert!(!catalog::catalog(root, &crates, Mode::Check).expect("fresh"));
}

fn req(kind: Kind, name: &str, context: Option<&str>) -> Request {
    Request {
        kind,
        name: name.to_owned(),
        context: context.map(str::to_owned),
        materialized: false,
    }
}

#[test]
fn new_module_refuses_bad_or_taken_names_and_changes_nothing() {
    let dir = fixture();
    let root = dir.path();
    let before = snapshot(root);
    let cases = [
        (req(Kind::View, "shop-orders", None), "already exists"),
        (req(Kind::View, "Shop_Orders", None), "invalid module name"),
        (req(Kind::View, "shop-", None), "invalid module name"),
        (req(Kind::View, "2shop", None), "invalid module name"),
        (
            req(Kind::View, "shop-events", None),
            "reserved for a context's events crate",
        ),
        (req(Kind::View, "fairway-runtime", None), "reserved"),
        (req(Kind::Command, "loop", None), "reserved"),
        (
            req(Kind::Command, "ok-name", Some("Bad")),
            "invalid context",
        ),
        (
            req(Kind::Events, "ok-name", None),
            "command, view or automation",
        ),
    ];
    for (r, expected) in cases {
        let err = new_module(root, &r).expect_err(&r.name);
        let msg = format!("{err:#}");
        assert!(msg.contains(expected), "{}: {msg}", r.name);
        assert_eq!(snapshot(root), before, "{} changed the tree", r.name);
    }
    // Without a host there is nothing to register with: refused before writing.
    fs::remove_dir_all(root.join("crates")).expect("rm host");
    let before = snapshot(root);
    let msg = format!(
        "{:#}",
        new_module(root, &req(Kind::View, "shop-list", None)).expect_err("no host")
    );
    assert!(msg.contains("host"), "{msg}");
    assert_eq!(snapshot(root), before);
}

#[test]
fn new_module_creates_the_crate_the_events_crate_and_registers_it() {
    let dir = fixture();
    let root = dir.path();
    new_module(root, &req(Kind::Automation, "open-loans", Some("library"))).expect("created");
    let m = root.join("modules/open-loans");
    let cargo = fs::read_to_string(m.join("Cargo.toml")).expect("cargo");
    assert!(
        cargo.contains("kind = \"automation\"\ncontext = \"library\""),
        "{cargo}"
    );
    assert!(
        cargo.contains("library-events = { path = \"../library-events\" }"),
        "{cargo}"
    );
    assert!(cargo.contains("[lints]\nworkspace = true"));
    let lib = fs::read_to_string(m.join("src/lib.rs")).expect("lib");
    assert!(lib.starts_with("//! Automation `open-loans`"), "{lib}");
    assert!(lib.contains("pub fn module() -> Module"));
    assert!(
        fs::read_to_string(m.join("src/tests.rs"))
            .expect("tests")
            .contains("#[test]")
    );
    let events =
        fs::read_to_string(root.join("modules/library-events/src/lib.rs")).expect("events");
    assert!(events.contains("pub struct LibraryExampleRecorded"));
    assert!(
        fs::read_to_string(host_manifest(root))
            .expect("host")
            .contains("open-loans = { path = \"../../modules/open-loans\" }")
    );
    assert!(
        fs::read_to_string(host_modules_rs(root))
            .expect("list")
            .contains("open_loans::module()")
    );
    let cat = fs::read_to_string(root.join(catalog::CATALOG)).expect("catalog");
    assert!(
        cat.contains("## open-loans") && cat.contains("`automation:open-loans`"),
        "{cat}"
    );
    assert!(sync_all(root, Mode::Check).expect("check").is_empty());

    // Default context: the first segment. An existing events crate without the example events
    // is never edited (issue 15: they were re-appended after every deletion); the skeleton gets
    // its own copy instead.
    let before = fs::read_to_string(root.join("modules/shop-events/src/lib.rs")).expect("shop");
    let created = create(root, &req(Kind::Command, "shop-cancel-order", None)).expect("created");
    assert_eq!(created.context, "shop");
    assert!(created.local_examples);
    let shop = fs::read_to_string(root.join("modules/shop-events/src/lib.rs")).expect("shop");
    assert_eq!(shop, before, "the existing events crate is left as it is");
    let local = fs::read_to_string(root.join("modules/shop-cancel-order/src/example_events.rs"))
        .expect("the skeleton's own example events");
    assert!(local.contains("pub struct ShopExampleRecorded"), "{local}");
    create(root, &req(Kind::View, "shop-notes", None)).expect("created");
    let again = fs::read_to_string(root.join("modules/shop-events/src/lib.rs")).expect("shop");
    assert_eq!(again, before, "still untouched");
    // A context created by new-module keeps its example events in the events crate, and the
    // next skeleton of that context uses them.
    let created = create(root, &req(Kind::Command, "library-renew", None)).expect("created");
    assert!(!created.local_examples);
    assert!(
        !root
            .join("modules/library-renew/src/example_events.rs")
            .exists()
    );
    let lib = fs::read_to_string(root.join("modules/shop-cancel-order/src/lib.rs")).expect("lib");
    assert!(
        lib.contains("pub struct CancelOrder"),
        "the slice after the context prefix names the command"
    );
}

#[test]
fn new_module_view_materialized_generates_a_materialized_view() {
    let dir = fixture();
    let root = dir.path();
    let before = snapshot(root);
    let bad = Request {
        materialized: true,
        ..req(Kind::Command, "shop-refund", None)
    };
    let msg = create(root, &bad).expect_err("views only").to_string();
    assert!(msg.contains("views only"), "{msg}");
    assert_eq!(snapshot(root), before, "a refused request changes nothing");
    let view = Request {
        materialized: true,
        ..req(Kind::View, "shop-notes", None)
    };
    create(root, &view).expect("created");
    let lib = fs::read_to_string(root.join("modules/shop-notes/src/lib.rs")).expect("lib");
    assert!(lib.contains("impl MaterializedView for Notes"), "{lib}");
    assert!(lib.contains(".materialized(Notes)"), "{lib}");
    assert!(
        lib.contains("view_ready(VIEW_NAME, params.after, WAIT)"),
        "{lib}"
    );
    let tests = fs::read_to_string(root.join("modules/shop-notes/src/tests.rs")).expect("tests");
    assert!(tests.contains(".view_scan(Notes, \"\")"), "{tests}");
}
