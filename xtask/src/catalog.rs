//! `cargo xtask catalog`: `docs/catalog.md`, the event model of the system as text.
//!
//! Generated from the code, without building it: each module's `[package.metadata.fairway]`,
//! its `lib.rs` `//!` header, and the runtime builder calls of its `module()` function
//! (`Module::new`, `describe`, `get`/`post`/`put`/`patch`/`delete`, `command::<C>`, `reads::<S>`,
//! `appends::<E>`, `materialized(V)`, `automation(A, ..)`, `automation_with(A, ..)`), resolved through the
//! `impl Command/MaterializedView/Automation/DomainEvent` blocks and `event_set!` declarations
//! of the module and its context's events crate. This mirrors what the runtime's
//! `Host::catalog()` reports, read from the source instead of from a running host.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::source::{self, ImplBlock, Tok};
use super::workspace::{Kind, Mode, ModuleCrate, ensure_file, rel};

/// The catalog's path, relative to the root.
pub const CATALOG: &str = "docs/catalog.md";

/// Where the host serves the API contract (`fairway_runtime::openapi::OPENAPI_PATH`).
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The README section about the contract, relative to the catalog.
const README_CONTRACT: &str = "../README.md#api-contract";

/// A module's `index`-th route's operation id, as `fairway_runtime::openapi::operation_id`
/// names it: the module's name, then `NAME-2`, `NAME-3`, ...
pub fn operation_id(module: &str, index: usize) -> String {
    if index == 0 {
        module.to_owned()
    } else {
        format!("{module}-{}", index + 1)
    }
}

/// What the catalog says about one module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Crate (and module) name.
    pub name: String,
    /// Pattern.
    pub kind: String,
    /// Bounded context.
    pub context: String,
    /// `describe(..)` text.
    pub description: String,
    /// `METHOD path` pairs.
    pub routes: Vec<(String, String)>,
    /// Event types read.
    pub reads: Vec<String>,
    /// Event types appended.
    pub appends: Vec<String>,
    /// Background workers (`view:..`, `automation:..`).
    pub workers: Vec<String>,
    /// The `//!` header, as Markdown.
    pub header: String,
    /// Things the reader could not resolve.
    pub warnings: Vec<String>,
}

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn tokens_of(dir: &Path) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    for f in rust_files(dir) {
        let text =
            fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        toks.extend(source::tokenize(&text));
    }
    Ok(toks)
}

/// The `//!` lines at the top of a file, without the `//!` prefix.
pub fn inner_doc(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("//!") else {
            if t.is_empty() && out.is_empty() {
                continue;
            }
            break;
        };
        out.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        out.push('\n');
    }
    out
}

/// Rustdoc Markdown made fit to nest in the catalog: headings demoted by three levels, rust
/// code fences normalised to `rust` with rustdoc's hidden `# ` lines removed.
pub fn doc_to_markdown(doc: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<bool> = None; // Some(is_rust) inside a fence.
    for line in doc.lines() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            match fence {
                None => {
                    let info = info.trim();
                    let rust = info.is_empty()
                        || info.split(',').all(|w| {
                            matches!(
                                w.trim(),
                                "rust"
                                    | "ignore"
                                    | "no_run"
                                    | "should_panic"
                                    | "compile_fail"
                                    | "edition2021"
                                    | "edition2024"
                            )
                        });
                    out.push_str(if rust { "```rust" } else { line.trim_end() });
                    out.push('\n');
                    fence = Some(rust);
                }
                Some(_) => {
                    out.push_str("```\n");
                    fence = None;
                }
            }
            continue;
        }
        match fence {
            Some(true) if t == "#" || t.starts_with("# ") => {}
            None if t.starts_with('#') => {
                out.push_str("###");
                out.push_str(t);
                out.push('\n');
            }
            Some(_) => {
                out.push_str(line.trim_end());
                out.push('\n');
            }
            None => {
                out.push_str(&unlink(line.trim_end()));
                out.push('\n');
            }
        }
    }
    out.trim_end().to_owned()
}

/// Rustdoc intra-doc links (`` [`Name`] `` not followed by `(` or `[`) as plain code: they
/// resolve in rustdoc, not in the catalog.
fn unlink(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("[`") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("`]") else {
            break;
        };
        let next = after[end + 2..].chars().next();
        out.push_str(&rest[..start]);
        if matches!(next, Some('(') | Some('[')) {
            out.push_str(&rest[start..start + 2 + end + 2]);
        } else {
            out.push('`');
            out.push_str(&after[..end]);
            out.push('`');
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

struct Resolver<'a> {
    toks: &'a [Tok],
    impls: &'a [ImplBlock],
    sets: &'a BTreeMap<String, Vec<String>>,
}

impl Resolver<'_> {
    fn find(&self, trait_name: &str, type_name: &str) -> Option<&ImplBlock> {
        self.impls
            .iter()
            .find(|i| i.trait_name == trait_name && i.type_name == type_name)
    }

    /// A call's string argument: its first literal, or the constant it names.
    fn str_arg(&self, call: &source::BuilderCall) -> Option<String> {
        call.first_str.clone().or_else(|| {
            call.first_ident
                .as_deref()
                .filter(|i| source::is_const_name(i))
                .and_then(|i| source::const_value(self.toks, i))
        })
    }

    /// The stored type of an event struct (its `const TYPE`, else its Rust name).
    fn event_type(&self, ty: &str) -> String {
        self.find("DomainEvent", ty)
            .and_then(|i| i.const_str("TYPE"))
            .unwrap_or_else(|| ty.to_owned())
    }

    /// The stored types of an event set.
    fn set_types(&self, set: &str, warnings: &mut Vec<String>) -> Vec<String> {
        match self.sets.get(set) {
            Some(members) => members.iter().map(|m| self.event_type(m)).collect(),
            None => {
                warnings.push(format!("event set `{set}` not found"));
                Vec::new()
            }
        }
    }

    fn assoc_set(
        &self,
        trait_name: &str,
        ty: &str,
        assoc: &str,
        warnings: &mut Vec<String>,
    ) -> Vec<String> {
        match self.find(trait_name, ty).and_then(|i| i.assoc_type(assoc)) {
            Some(set) => self.set_types(&set, warnings),
            None => {
                warnings.push(format!("`impl {trait_name} for {ty}` not found"));
                Vec::new()
            }
        }
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

/// Reads one module's catalog entry from its sources (and its context's events crate, `events`).
pub fn entry(root: &Path, module: &ModuleCrate, events: Option<&ModuleCrate>) -> Result<Entry> {
    let src = module.dir.join("src");
    let lib = src.join("lib.rs");
    let lib_text =
        fs::read_to_string(&lib).with_context(|| format!("cannot read {}", rel(root, &lib)))?;
    let mut toks = tokens_of(&src)?;
    if let Some(ev) = events {
        toks.extend(tokens_of(&ev.dir.join("src"))?);
    }
    let impls = source::impls(&toks);
    let sets = source::event_sets(&toks);
    let r = Resolver {
        toks: &toks,
        impls: &impls,
        sets: &sets,
    };
    let mut e = Entry {
        name: module.name.clone(),
        kind: module.kind.to_string(),
        context: module.context.clone(),
        header: doc_to_markdown(&inner_doc(&lib_text)),
        ..Entry::default()
    };
    let Some(decl) = source::module_decl(&toks) else {
        e.warnings
            .push("no `fn module()` with a `Module::new(..)` chain found".to_owned());
        return Ok(e);
    };
    if let Some(k) = &decl.kind
        && *k != e.kind
    {
        e.warnings.push(format!(
            "metadata says kind {}, `Module::new` says {k}",
            e.kind
        ));
    }
    if let Some(n) = &decl.name
        && *n != e.name
    {
        e.warnings
            .push(format!("`Module::new` names the module {n:?}"));
    }
    let mut warnings = Vec::new();
    for call in &decl.calls {
        let ty = call.turbofish.clone();
        match (call.method.as_str(), ty) {
            ("describe", _) => e.description = r.str_arg(call).unwrap_or_default(),
            (m @ ("get" | "post" | "put" | "patch" | "delete"), _) => e.routes.push((
                m.to_uppercase(),
                r.str_arg(call).unwrap_or_else(|| "?".to_owned()),
            )),
            ("appends", Some(t)) => push_unique(&mut e.appends, [r.event_type(&t)]),
            ("reads", Some(set)) => push_unique(&mut e.reads, r.set_types(&set, &mut warnings)),
            ("command", Some(c)) => {
                // A command implements `Command` (one state) or `Decide` (a decision model).
                let kind = if r.find("Decide", &c).is_some() {
                    "Decide"
                } else {
                    "Command"
                };
                push_unique(&mut e.reads, r.assoc_set(kind, &c, "Events", &mut warnings))
            }
            ("materialized", _) => {
                let Some(v) = call.first_ident.clone() else {
                    continue;
                };
                push_unique(
                    &mut e.reads,
                    r.assoc_set("MaterializedView", &v, "Events", &mut warnings),
                );
                let name = r
                    .find("MaterializedView", &v)
                    .and_then(|i| i.fn_str("name", &toks))
                    .unwrap_or(v);
                e.workers.push(format!("view:{name}"));
            }
            ("automation" | "automation_with", _) => {
                let Some(a) = call.first_ident.clone() else {
                    continue;
                };
                push_unique(
                    &mut e.reads,
                    r.assoc_set("Automation", &a, "Trigger", &mut warnings),
                );
                if let Some(c) = r
                    .find("Automation", &a)
                    .and_then(|i| i.assoc_type("Command"))
                {
                    push_unique(
                        &mut e.reads,
                        r.assoc_set("Command", &c, "Events", &mut warnings),
                    );
                }
                let name = r
                    .find("Automation", &a)
                    .and_then(|i| i.fn_str("name", &toks))
                    .unwrap_or(a);
                e.workers.push(format!("automation:{name}"));
            }
            ("worker", _) => {
                if let Some(w) = r.str_arg(call) {
                    e.workers.push(w);
                }
            }
            (other, _) => warnings.push(format!("the builder call `.{other}(..)`")),
        }
    }
    push_unique(&mut e.warnings, warnings);
    Ok(e)
}

fn code_list(items: &[String]) -> String {
    if items.is_empty() {
        "—".to_owned()
    } else {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The whole catalog as Markdown.
pub fn render(root: &Path, crates: &[ModuleCrate]) -> Result<String> {
    let events_of = |ctx: &str| {
        crates
            .iter()
            .find(|c| c.kind == Kind::Events && c.context == ctx)
    };
    let mut entries = Vec::new();
    for m in crates.iter().filter(|m| m.kind.is_module()) {
        entries.push(entry(root, m, events_of(&m.context))?);
    }

    let mut s = String::new();
    s.push_str("# Module catalog\n\n");
    s.push_str(
        "Generated by `cargo xtask catalog` (and `cargo xtask sync`) from the crates under \
         `modules/`: their\n`[package.metadata.fairway]`, their `//!` headers and the builder \
         calls of their `module()`\nfunctions. Do not edit; `cargo test -p xtask` fails when it \
         is stale.\n\n",
    );
    s.push_str(&format!(
        "The HTTP contract of these routes, with their request and response schemas, errors, \
         idempotency keys and\nauthentication, is the OpenAPI 3.1 document the host serves at \
         [`GET {OPENAPI_PATH}`]({README_CONTRACT}) (no\ncredentials needed); each route's \
         operation id is its module's name (`NAME-2`, `NAME-3`, ... for a module's\nlater \
         routes).\n\n"
    ));

    // The event model: who appends and who reads each event type.
    let mut appended: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut read: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in &entries {
        for t in &e.appends {
            appended.entry(t).or_default().insert(&e.name);
        }
        for t in &e.reads {
            read.entry(t).or_default().insert(&e.name);
        }
    }
    let types: BTreeSet<&str> = appended.keys().chain(read.keys()).copied().collect();
    s.push_str("## Event model\n\n");
    if types.is_empty() {
        s.push_str("No module declares events yet.\n\n");
    } else {
        s.push_str("| Event | Appended by | Read by |\n|---|---|---|\n");
        let names = |m: Option<&BTreeSet<&str>>| {
            m.filter(|m| !m.is_empty()).map_or("—".to_owned(), |m| {
                m.iter().copied().collect::<Vec<_>>().join(", ")
            })
        };
        for t in &types {
            s.push_str(&format!(
                "| `{t}` | {} | {} |\n",
                names(appended.get(t)),
                names(read.get(t))
            ));
        }
        s.push('\n');
    }

    // Modules by context.
    let contexts: BTreeSet<&str> = crates.iter().map(|c| c.context.as_str()).collect();
    s.push_str("## Modules\n\n");
    if entries.is_empty() {
        s.push_str("No modules yet: `cargo xtask new-module command|view|automation NAME`.\n");
    }
    for ctx in contexts {
        let in_ctx: Vec<&Entry> = entries.iter().filter(|e| e.context == ctx).collect();
        s.push_str(&format!("### Context `{ctx}`\n\n"));
        match events_of(ctx) {
            Some(ev) => s.push_str(&format!("Events crate: `{}`.\n\n", ev.name)),
            None => s.push_str("No events crate.\n\n"),
        }
        if in_ctx.is_empty() {
            s.push_str("No modules.\n\n");
        } else {
            s.push_str("| Module | Pattern | Description |\n|---|---|---|\n");
            for e in &in_ctx {
                s.push_str(&format!(
                    "| [`{}`](#{}) | {} | {} |\n",
                    e.name,
                    e.name,
                    e.kind,
                    e.description.replace('|', "\\|")
                ));
            }
            s.push('\n');
        }
    }
    for e in &entries {
        s.push_str(&format!("## {}\n\n", e.name));
        s.push_str(&format!(
            "Pattern: **{}** · context `{}` · `modules/{}`\n\n",
            e.kind, e.context, e.name
        ));
        if !e.description.is_empty() {
            s.push_str(&format!("{}\n\n", e.description));
        }
        let routes: Vec<String> = e.routes.iter().map(|(m, p)| format!("{m} {p}")).collect();
        s.push_str(&format!("- Routes: {}\n", code_list(&routes)));
        if !e.routes.is_empty() {
            let ids: Vec<String> = (0..e.routes.len())
                .map(|i| operation_id(&e.name, i))
                .collect();
            s.push_str(&format!(
                "- OpenAPI operations ([`{OPENAPI_PATH}`]({README_CONTRACT})): {}\n",
                code_list(&ids)
            ));
        }
        s.push_str(&format!("- Reads: {}\n", code_list(&e.reads)));
        s.push_str(&format!("- Appends: {}\n", code_list(&e.appends)));
        if !e.workers.is_empty() {
            s.push_str(&format!("- Workers: {}\n", code_list(&e.workers)));
        }
        for w in &e.warnings {
            s.push_str(&format!("- Not resolved from the source: {w}\n"));
        }
        s.push('\n');
        if e.header.is_empty() {
            s.push_str("_No `//!` header._\n\n");
        } else {
            s.push_str(&e.header);
            s.push_str("\n\n");
        }
    }
    Ok(format!("{}\n", s.trim_end()))
}

/// Writes (or checks) `docs/catalog.md`. Returns whether it was stale.
pub fn catalog(root: &Path, crates: &[ModuleCrate], mode: Mode) -> Result<bool> {
    ensure_file(&root.join(CATALOG), &render(root, crates)?, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_nested_markdown() {
        let doc = "Title [`Acknowledge`] and [`Link`](https://x).\n# Example\n```\n# use hidden;\nshown();\n```\n```text\n# kept\n```\n";
        assert_eq!(
            doc_to_markdown(doc),
            "Title `Acknowledge` and [`Link`](https://x).\n#### Example\n```rust\nshown();\n```\n```text\n# kept\n```"
        );
    }

    #[test]
    fn inner_doc_stops_at_the_first_other_line() {
        assert_eq!(
            inner_doc("\n//! a\n//!\n//!  b\nuse x;\n//! c"),
            "a\n\n b\n"
        );
    }
}
