//! A small reader of module sources: enough of Rust's token structure to find the runtime's
//! builder calls in `module()`, the `impl Command/LiveView/MaterializedView/Automation/DomainEvent`
//! blocks, and `event_set!` declarations. It does not expand macros or resolve imports: names
//! are matched by their last path segment, which is how modules are written in this repository.

use std::collections::BTreeMap;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An identifier or keyword.
    Ident(String),
    /// A string literal's contents (escapes kept as written, except `\"` and `\\`).
    Str(String),
    /// Any other single character (`{`, `:`, `<`, ...). Lifetimes, chars and numbers are dropped.
    Punct(char),
}

/// Splits Rust source into tokens, skipping comments, char literals, lifetimes and numbers.
pub fn tokenize(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            let (s, end) = string_literal(&chars, i + 1);
            out.push(Tok::Str(s));
            i = end;
        } else if (c == 'r' || c == 'b')
            && let Some((s, end)) = raw_string(&chars, i)
        {
            out.push(Tok::Str(s));
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a, 'static).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

fn string_literal(chars: &[char], mut i: usize) -> (String, usize) {
    let mut s = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                match chars.get(i + 1) {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('\n') => {
                        // A line continuation: skip the newline and the next line's indent.
                        i += 2;
                        while i < chars.len() && chars[i].is_whitespace() {
                            i += 1;
                        }
                        continue;
                    }
                    Some(other) => {
                        s.push('\\');
                        s.push(*other);
                    }
                    None => {}
                }
                i += 2;
            }
            '"' => return (s, i + 1),
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    (s, i)
}

/// `r"..."`, `r#"..."#`, `b"..."`, `br#"..."#` starting at `i`, if that is what is there.
fn raw_string(chars: &[char], i: usize) -> Option<(String, usize)> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    let raw = chars.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    if !raw {
        // b"..." only.
        if j > i && chars.get(j) == Some(&'"') {
            let (s, end) = string_literal(chars, j + 1);
            return Some((s, end));
        }
        return None;
    }
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    let start = j;
    while j < chars.len() {
        if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
            return Some((chars[start..j].iter().collect(), j + 1 + hashes));
        }
        j += 1;
    }
    None
}

fn is_ident(t: Option<&Tok>, s: &str) -> bool {
    matches!(t, Some(Tok::Ident(x)) if x == s)
}

fn is_punct(t: Option<&Tok>, c: char) -> bool {
    t == Some(&Tok::Punct(c))
}

/// The index just past the group opened at `open` (which holds `(`, `[`, `{` or `<`).
fn group_end(toks: &[Tok], open: usize) -> usize {
    let (o, c) = match toks.get(open) {
        Some(Tok::Punct('(')) => ('(', ')'),
        Some(Tok::Punct('[')) => ('[', ']'),
        Some(Tok::Punct('{')) => ('{', '}'),
        Some(Tok::Punct('<')) => ('<', '>'),
        _ => return open + 1,
    };
    let mut depth = 0usize;
    let mut i = open;
    while i < toks.len() {
        if toks[i] == Tok::Punct(o) {
            depth += 1;
        } else if toks[i] == Tok::Punct(c) {
            // `->` inside generics is not a closing bracket.
            let arrow = c == '>' && i > 0 && toks[i - 1] == Tok::Punct('-');
            if !arrow {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
        }
        i += 1;
    }
    toks.len()
}

/// The last identifier of a type path starting at `i` (`crate::a::Foo<T>` -> `Foo`), stopping
/// at the first token that cannot continue a path.
fn path_last_ident(toks: &[Tok], mut i: usize) -> Option<String> {
    let mut last = None;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(s) if s != "where" => {
                last = Some(s.clone());
                i += 1;
            }
            Tok::Punct(':') | Tok::Punct('&') => i += 1,
            _ => break,
        }
    }
    last
}

/// One `impl Trait for Type { ... }` block.
#[derive(Debug, Clone)]
pub struct ImplBlock {
    /// The trait's last path segment.
    pub trait_name: String,
    /// The implementing type's last path segment.
    pub type_name: String,
    /// The body's tokens (without the outer braces).
    pub body: Vec<Tok>,
}

impl ImplBlock {
    /// `type NAME = Path;` in the body, as the path's last segment.
    pub fn assoc_type(&self, name: &str) -> Option<String> {
        let b = &self.body;
        (0..b.len()).find_map(|i| {
            (is_ident(b.get(i), "type")
                && is_ident(b.get(i + 1), name)
                && is_punct(b.get(i + 2), '='))
            .then(|| path_last_ident(b, i + 3))
            .flatten()
        })
    }

    /// The first string literal of `const NAME ... = "..."` in the body.
    pub fn const_str(&self, name: &str) -> Option<String> {
        let b = &self.body;
        let at =
            (0..b.len()).find(|&i| is_ident(b.get(i), "const") && is_ident(b.get(i + 1), name))?;
        b[at..]
            .iter()
            .take_while(|t| **t != Tok::Punct(';'))
            .find_map(|t| match t {
                Tok::Str(s) => Some(s.clone()),
                _ => None,
            })
    }

    /// The string the body of `fn NAME` returns: its first string literal, or the value of
    /// the first `UPPER_CASE` constant it names (looked up in `all`).
    pub fn fn_str(&self, name: &str, all: &[Tok]) -> Option<String> {
        let b = &self.body;
        let at =
            (0..b.len()).find(|&i| is_ident(b.get(i), "fn") && is_ident(b.get(i + 1), name))?;
        let open = (at..b.len()).find(|&i| is_punct(b.get(i), '{'))?;
        let end = group_end(b, open);
        b[open..end].iter().find_map(|t| match t {
            Tok::Str(s) => Some(s.clone()),
            Tok::Ident(c) if is_const_name(c) => const_value(all, c),
            _ => None,
        })
    }
}

/// Whether an identifier looks like a constant (`VIEW_NAME`).
pub fn is_const_name(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The string literal of `const NAME: .. = "..";` anywhere in `toks`.
pub fn const_value(toks: &[Tok], name: &str) -> Option<String> {
    let at = (0..toks.len())
        .find(|&i| is_ident(toks.get(i), "const") && is_ident(toks.get(i + 1), name))?;
    toks[at..]
        .iter()
        .take_while(|t| **t != Tok::Punct(';'))
        .find_map(|t| match t {
            Tok::Str(s) => Some(s.clone()),
            _ => None,
        })
}

/// Every `impl Trait for Type` block.
pub fn impls(toks: &[Tok]) -> Vec<ImplBlock> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if !is_ident(toks.get(i), "impl") {
            i += 1;
            continue;
        }
        // Skip `impl<...>` generics.
        let mut j = i + 1;
        if is_punct(toks.get(j), '<') {
            j = group_end(toks, j);
        }
        // The header runs to the body's `{`; find `for` at generic depth 0.
        let mut depth = 0i32;
        let mut trait_name = None;
        let mut for_at = None;
        let mut open = None;
        while j < toks.len() {
            match &toks[j] {
                Tok::Punct('<') => depth += 1,
                Tok::Punct('>') if !(j > 0 && toks[j - 1] == Tok::Punct('-')) => depth -= 1,
                Tok::Punct('{') if depth <= 0 => {
                    open = Some(j);
                    break;
                }
                Tok::Punct(';') => break,
                Tok::Ident(s) if depth <= 0 && s == "for" && for_at.is_none() => for_at = Some(j),
                Tok::Ident(s) if depth <= 0 && for_at.is_none() => trait_name = Some(s.clone()),
                _ => {}
            }
            j += 1;
        }
        let Some(open) = open else {
            i = j.max(i + 1);
            continue;
        };
        let end = group_end(toks, open);
        if let (Some(trait_name), Some(f)) = (trait_name, for_at)
            && let Some(type_name) = path_last_ident(toks, f + 1)
        {
            out.push(ImplBlock {
                trait_name,
                type_name,
                body: toks[open + 1..end.saturating_sub(1)].to_vec(),
            });
        }
        // Continue inside the body too: impls can be nested in modules, not in other impls,
        // but scanning on is harmless.
        i = open + 1;
    }
    out
}

/// Every `event_set! { enum Name { Variant(Type), .. } }`: set name -> member type names.
pub fn event_sets(toks: &[Tok]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for i in 0..toks.len() {
        if !(is_ident(toks.get(i), "event_set") && is_punct(toks.get(i + 1), '!')) {
            continue;
        }
        let open = i + 2;
        let end = group_end(toks, open);
        let inner = &toks[open.min(end)..end];
        let Some(e) = (0..inner.len()).find(|&k| is_ident(inner.get(k), "enum")) else {
            continue;
        };
        let Some(Tok::Ident(name)) = inner.get(e + 1) else {
            continue;
        };
        let Some(body_open) = (e..inner.len()).find(|&k| is_punct(inner.get(k), '{')) else {
            continue;
        };
        let body_end = group_end(inner, body_open);
        let mut members = Vec::new();
        let mut k = body_open + 1;
        while k < body_end {
            if matches!(inner.get(k), Some(Tok::Ident(_))) && is_punct(inner.get(k + 1), '(') {
                let close = group_end(inner, k + 1);
                if let Some(t) = path_last_ident(inner, k + 2) {
                    members.push(t);
                }
                k = close;
            } else {
                k += 1;
            }
        }
        out.insert(name.clone(), members);
    }
    out
}

/// One builder call of `module()`: `.method::<Turbofish>(args)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderCall {
    /// The method name.
    pub method: String,
    /// The turbofish type's last segment, if any.
    pub turbofish: Option<String>,
    /// The first string literal among the arguments, if any.
    pub first_str: Option<String>,
    /// The first identifier among the arguments (a type or value path's first segment).
    pub first_ident: Option<String>,
}

/// The module declared in `pub fn module()`: `Module::new(ModuleKind::K, "name")` and its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleDecl {
    /// The `ModuleKind` variant, lowercased.
    pub kind: Option<String>,
    /// The name literal, when it is a literal.
    pub name: Option<String>,
    /// The builder calls, in order.
    pub calls: Vec<BuilderCall>,
}

/// Finds `fn module(` and reads its `Module::new(..)` chain.
pub fn module_decl(toks: &[Tok]) -> Option<ModuleDecl> {
    let at = (0..toks.len()).find(|&i| {
        is_ident(toks.get(i), "fn")
            && is_ident(toks.get(i + 1), "module")
            && is_punct(toks.get(i + 2), '(')
    })?;
    let open = (at..toks.len()).find(|&i| is_punct(toks.get(i), '{'))?;
    let end = group_end(toks, open);
    let body = &toks[open..end];
    let new_at = (0..body.len()).find(|&i| {
        is_ident(body.get(i), "Module")
            && is_punct(body.get(i + 1), ':')
            && is_punct(body.get(i + 2), ':')
            && is_ident(body.get(i + 3), "new")
            && is_punct(body.get(i + 4), '(')
    })?;
    let args_end = group_end(body, new_at + 4);
    let args = &body[new_at + 5..args_end.saturating_sub(1)];
    let kind = (0..args.len())
        .find(|&k| is_ident(args.get(k), "ModuleKind"))
        .and_then(|k| path_last_ident(args, k))
        .map(|k| k.to_lowercase());
    let name = args.iter().find_map(|t| match t {
        Tok::Str(s) => Some(s.clone()),
        _ => None,
    });
    let mut calls = Vec::new();
    let mut i = args_end;
    // The chain: `.ident [::<T>] ( .. )` repeated.
    while is_punct(body.get(i), '.') {
        let Some(Tok::Ident(method)) = body.get(i + 1) else {
            break;
        };
        let mut j = i + 2;
        let mut turbofish = None;
        if is_punct(body.get(j), ':')
            && is_punct(body.get(j + 1), ':')
            && is_punct(body.get(j + 2), '<')
        {
            let close = group_end(body, j + 2);
            turbofish = path_last_ident(body, j + 3);
            j = close;
        }
        if !is_punct(body.get(j), '(') {
            break;
        }
        let close = group_end(body, j);
        let inner = &body[j + 1..close.saturating_sub(1)];
        calls.push(BuilderCall {
            method: method.clone(),
            turbofish,
            first_str: inner.iter().find_map(|t| match t {
                Tok::Str(s) => Some(s.clone()),
                _ => None,
            }),
            first_ident: inner.iter().find_map(|t| match t {
                Tok::Ident(s) => Some(s.clone()),
                _ => None,
            }),
        });
        i = close;
    }
    Some(ModuleDecl { kind, name, calls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_skip_comments_lifetimes_and_chars() {
        let t =
            tokenize("// x\nconst TYPE: &'static str = \"A\\\"b\"; /* c /* d */ */ let c = '{';");
        assert_eq!(
            t,
            vec![
                Tok::Ident("const".into()),
                Tok::Ident("TYPE".into()),
                Tok::Punct(':'),
                Tok::Punct('&'),
                Tok::Ident("str".into()),
                Tok::Punct('='),
                Tok::Str("A\"b".into()),
                Tok::Punct(';'),
                Tok::Ident("let".into()),
                Tok::Ident("c".into()),
                Tok::Punct('='),
                Tok::Punct(';'),
            ]
        );
        assert_eq!(tokenize("r#\"a\"b\"#"), vec![Tok::Str("a\"b".into())]);
    }

    #[test]
    fn finds_impls_sets_and_the_module_chain() {
        let src = r#"
            fairway_runtime::event_set! {
                /// Doc.
                pub enum Reads { Created(ev::ListCreated), Added(ItemAdded) }
            }
            impl fairway_runtime::DomainEvent for ListCreated {
                const TYPE: &'static str = "ListCreated";
                fn tags(&self) -> Vec<String> { vec![] }
            }
            impl<'a> Command for CreateList<'a> where Self: Sized {
                type Events = crate::Reads;
                type State = Option<Vec<u8>>;
            }
            impl Automation for Welcome {
                type Trigger = Reads;
                fn name(&self) -> &str { "welcome" }
            }
            pub fn module() -> Module {
                Module::new(ModuleKind::Command, "todo-create-list")
                    .describe("Creates a list")
                    .post("/lists", create)
                    .command::<CreateList<'static>>()
                    .appends::<ListCreated>()
                    .automation(Welcome::default(), ())
            }
        "#;
        let t = tokenize(src);
        assert_eq!(
            event_sets(&t).get("Reads"),
            Some(&vec!["ListCreated".to_owned(), "ItemAdded".to_owned()])
        );
        let impls = impls(&t);
        assert_eq!(impls.len(), 3);
        assert_eq!(impls[0].trait_name, "DomainEvent");
        assert_eq!(impls[0].const_str("TYPE").as_deref(), Some("ListCreated"));
        assert_eq!(impls[1].type_name, "CreateList");
        assert_eq!(impls[1].assoc_type("Events").as_deref(), Some("Reads"));
        assert_eq!(impls[2].fn_str("name", &t).as_deref(), Some("welcome"));
        let m = module_decl(&t).expect("module");
        assert_eq!(m.kind.as_deref(), Some("command"));
        assert_eq!(m.name.as_deref(), Some("todo-create-list"));
        let methods: Vec<_> = m.calls.iter().map(|c| c.method.as_str()).collect();
        assert_eq!(
            methods,
            ["describe", "post", "command", "appends", "automation"]
        );
        assert_eq!(m.calls[1].first_str.as_deref(), Some("/lists"));
        assert_eq!(m.calls[2].turbofish.as_deref(), Some("CreateList"));
        assert_eq!(m.calls[4].first_ident.as_deref(), Some("Welcome"));
    }
}
