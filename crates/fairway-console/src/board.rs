//! The Event Modeling board: commands -> events -> views and automations, drawn as SVG from the
//! modules' self-descriptions. Views and automations share the right-hand column (views first),
//! so that every arrow joins neighbouring columns and none crosses a box.

use std::fmt::Write as _;

use fairway_runtime::{ModuleInfo, ModuleKind};

const BOX_W: u32 = 210;
const BOX_H: u32 = 38;
const ROW: u32 = 52;
const TOP: u32 = 56;
const COL_X: [u32; 3] = [20, 340, 660];
const WIDTH: u32 = 900;

struct Node {
    /// The module's kind (events count as commands here; their column tells them apart).
    kind: ModuleKind,
    label: String,
    title: String,
    column: usize,
    row: u32,
}

/// Draws the board of `modules` as a standalone SVG document: a column of commands, one of
/// events, and one of views followed by automations; an arrow from a command to each event it appends, from an event
/// to each view and automation that reads it, and (dashed) from an automation to each event it
/// appends.
pub fn board_svg(modules: &[ModuleInfo]) -> String {
    let of_kind = |k: ModuleKind| modules.iter().filter(move |m| m.kind == k);
    let mut events: Vec<String> = Vec::new();
    let mut add_event = |t: &String| {
        if !events.contains(t) {
            events.push(t.clone());
        }
    };
    for m in of_kind(ModuleKind::Command) {
        m.appends.iter().for_each(&mut add_event);
    }
    for m in modules {
        m.appends.iter().for_each(&mut add_event);
    }
    for m in modules {
        m.reads.iter().for_each(&mut add_event);
    }

    let mut nodes: Vec<Node> = Vec::new();
    let index_of =
        |kind: ModuleKind, column: usize, label: &str, title: String, nodes: &mut Vec<Node>| {
            let row = u32::try_from(nodes.iter().filter(|n| n.column == column).count())
                .unwrap_or(u32::MAX);
            nodes.push(Node {
                kind,
                label: label.to_owned(),
                title,
                column,
                row,
            });
            nodes.len() - 1
        };
    let describe = |m: &ModuleInfo| {
        if m.description.is_empty() {
            m.name.clone()
        } else {
            format!("{}: {}", m.name, m.description)
        }
    };
    let commands: Vec<(usize, &ModuleInfo)> = of_kind(ModuleKind::Command)
        .map(|m| {
            (
                index_of(ModuleKind::Command, 0, &m.name, describe(m), &mut nodes),
                m,
            )
        })
        .collect();
    let event_nodes: Vec<usize> = events
        .iter()
        .map(|e| index_of(ModuleKind::Command, 1, e, format!("event {e}"), &mut nodes))
        .collect();
    let views: Vec<(usize, &ModuleInfo)> = of_kind(ModuleKind::View)
        .map(|m| {
            (
                index_of(ModuleKind::View, 2, &m.name, describe(m), &mut nodes),
                m,
            )
        })
        .collect();
    let automations: Vec<(usize, &ModuleInfo)> = of_kind(ModuleKind::Automation)
        .map(|m| {
            (
                index_of(ModuleKind::Automation, 2, &m.name, describe(m), &mut nodes),
                m,
            )
        })
        .collect();
    let event_node = |t: &str| {
        events
            .iter()
            .position(|e| e == t)
            .and_then(|i| event_nodes.get(i).copied())
    };

    // (from, to, dashed)
    let mut edges: Vec<(usize, usize, bool)> = Vec::new();
    for (c, m) in &commands {
        edges.extend(
            m.appends
                .iter()
                .filter_map(|t| Some((*c, event_node(t)?, false))),
        );
    }
    for (v, m) in views.iter().chain(automations.iter()) {
        // An automation also reads what its command reads, usually its own output (to stay
        // idempotent): only the events it does not append are its triggers on the board.
        edges.extend(
            m.reads
                .iter()
                .filter(|t| m.kind != ModuleKind::Automation || !m.appends.contains(t))
                .filter_map(|t| Some((event_node(t)?, *v, false))),
        );
    }
    for (a, m) in &automations {
        edges.extend(
            m.appends
                .iter()
                .filter_map(|t| Some((*a, event_node(t)?, true))),
        );
    }

    let rows = nodes.iter().map(|n| n.row + 1).max().unwrap_or(1);
    let height = TOP + rows * ROW + 20;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-labelledby="board-title board-desc" font-family="system-ui, sans-serif" font-size="13">
<title id="board-title">Event Modeling board</title>
<desc id="board-desc">{} commands, {} events, {} views, {} automations; arrows go from a command to the events it appends, from an event to the views and automations that read it, and dashed from an automation to the events it appends.</desc>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>
<rect width="100%" height="100%" fill="#fcfcfa"/>
"##,
        commands.len(),
        events.len(),
        views.len(),
        automations.len()
    );
    for (i, heading) in ["Commands", "Events", "Views and automations"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="30" font-weight="bold" font-size="15" fill="#333">{heading}</text>"##,
            COL_X[i]
        );
    }
    let centre_y = |n: &Node| TOP + n.row * ROW + BOX_H / 2;
    for (from, to, dashed) in &edges {
        let (Some(a), Some(b)) = (nodes.get(*from), nodes.get(*to)) else {
            continue;
        };
        let (x1, x2) = if a.column < b.column {
            (COL_X[a.column] + BOX_W, COL_X[b.column])
        } else {
            (COL_X[a.column], COL_X[b.column] + BOX_W)
        };
        let (y1, y2) = (centre_y(a), centre_y(b));
        let bend = (x2.abs_diff(x1) / 2).max(40);
        let (c1, c2) = if x1 < x2 {
            (x1 + bend, x2.saturating_sub(bend))
        } else {
            (x1.saturating_sub(bend), x2 + bend)
        };
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r##"<path d="M{x1},{y1} C{c1},{y1} {c2},{y2} {x2},{y2}" fill="none" stroke="#777" stroke-width="1.4"{dash} marker-end="url(#arrow)"/>"##
        );
    }
    for n in &nodes {
        let (kind, fill, stroke) = match n.kind {
            ModuleKind::Command => ("command", "#cfe2f8", "#3d78c2"),
            ModuleKind::View => ("view", "#d5ecc2", "#5a9a36"),
            ModuleKind::Automation => ("automation", "#e3d3f0", "#8a5cb0"),
        };
        let (kind, fill, stroke) = if n.column == 1 {
            ("event", "#fbd9b8", "#d9822b")
        } else {
            (kind, fill, stroke)
        };
        let x = COL_X[n.column];
        let y = TOP + n.row * ROW;
        let label: String = if n.label.chars().count() > 28 {
            let mut s: String = n.label.chars().take(27).collect();
            s.push('…');
            s
        } else {
            n.label.clone()
        };
        let _ = writeln!(
            svg,
            r##"<g class="node {kind}"><title>{title}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{fill}" stroke="{stroke}"/><text x="{tx}" y="{ty}" fill="#1a1a1a">{label}</text></g>"##,
            title = escape(&n.title),
            tx = x + 10,
            ty = y + BOX_H / 2 + 4,
            label = escape(&label),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Escapes text for XML content and attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, kind: ModuleKind, reads: &[&str], appends: &[&str]) -> ModuleInfo {
        ModuleInfo {
            name: name.into(),
            kind,
            description: String::new(),
            routes: Vec::new(),
            reads: reads.iter().map(|s| (*s).to_owned()).collect(),
            appends: appends.iter().map(|s| (*s).to_owned()).collect(),
            workers: Vec::new(),
            max_attempts: None,
            sensitive_fields: Default::default(),
        }
    }

    #[test]
    fn draws_each_module_and_event_once_with_arrows() {
        let mods = vec![
            module(
                "open-account",
                ModuleKind::Command,
                &["Opened"],
                &["Opened"],
            ),
            module("accounts", ModuleKind::View, &["Opened", "Closed"], &[]),
            module(
                "welcome<&>",
                ModuleKind::Automation,
                &["Opened", "Welcomed"],
                &["Welcomed"],
            ),
        ];
        let svg = board_svg(&mods);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        for name in [
            "open-account",
            "accounts",
            "welcome&lt;&amp;&gt;",
            ">Opened<",
            ">Closed<",
            ">Welcomed<",
        ] {
            assert!(svg.contains(name), "{name} missing from the board");
        }
        assert_eq!(svg.matches(">Opened</text>").count(), 1);
        // open-account->Opened, Opened->accounts, Closed->accounts, Opened->welcome, welcome->Welcomed
        assert_eq!(svg.matches("marker-end=").count(), 5);
        assert_eq!(svg.matches("stroke-dasharray").count(), 1);
        assert!(!svg.contains("welcome<&>"));
    }
}
