//! The shape of the code, checked: no import cycles between modules, and each layer uses only
//! the layers below it (README, "Architecture").
//!
//! The test reads `src/` as text: every `crate::a::b` path outside comments and test modules,
//! and the items of `use crate::{...}` groups, is an edge from the module it is written in to the
//! deepest module the path names. A module's files may use their own parent modules (a service's
//! type is defined in its `mod.rs` and implemented in its files), so an edge from a module to one
//! of its ancestors is not counted. The graph is then checked at every depth: `services` against
//! `store`, `services::register` against `services::profiles`, and file by file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`services::register::grants`) to its source, test modules and comments removed.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut out = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        out.insert(parts.join("::"), strip(&text));
    }
    out
}

/// The source without `//` comments and without the test module at the end of the file.
fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| next.trim_start().contains("mod ") && next.trim_end().ends_with('{'))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path written after `crate::`, with `use crate::{a, b::c}` groups expanded.
fn crate_paths(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Items at the group's own level: split at commas outside nested braces.
            let (mut depth, mut start) = (0usize, 0usize);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(path_prefix(group[start..i].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(path_prefix(group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(path_prefix(after));
        }
        rest = after;
    }
    out.retain(|p| !p.is_empty());
    out
}

/// The leading `a::b::c` of `text` (identifiers joined by `::`).
fn path_prefix(text: &str) -> String {
    let mut end = 0;
    let bytes = text.as_bytes();
    loop {
        let start = end;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if end == start || !text[end..].starts_with("::") || !text[end + 2..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            return text[..end].to_owned();
        }
        end += 2;
    }
}

/// The graph with modules cut to `depth` segments.
fn graph(modules: &BTreeMap<String, String>, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let cut = |m: &str| m.split("::").take(depth).collect::<Vec<_>>().join("::");
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| modules.contains_key(m))
    };
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, src) in modules {
        let from = cut(module);
        g.entry(from.clone()).or_default();
        for path in crate_paths(src) {
            let Some(target) = resolve(&path) else { continue };
            // A module's files use their parents freely: they are parts of them.
            if module.starts_with(&format!("{target}::")) {
                continue;
            }
            let to = cut(&target);
            if to != from {
                g.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let lw = self.low[w.as_str()];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w.as_str()) {
                    let iw = self.index[w.as_str()];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk =
        Walk { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), found: Vec::new() };
    for v in g.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn the_parser_finds_the_paths_a_module_uses() {
    let src = strip(
        "use crate::services::register::Register;\nuse crate::{clock::Clock, store::{DynStore, StoreError}};\n// crate::faces::api in a comment\nfn f() { crate::protocol::scep::parse(x) }\n#[cfg(test)]\nmod tests {\n    use crate::faces::api;\n}\n",
    );
    let paths = crate_paths(&src);
    assert_eq!(paths, ["services::register::Register", "clock::Clock", "store", "protocol::scep::parse"]);
}

#[test]
fn a_cycle_is_found() {
    let mut m = BTreeMap::new();
    m.insert("a".to_owned(), "use crate::b::X;".to_owned());
    m.insert("b".to_owned(), "use crate::c::Y;".to_owned());
    m.insert("c".to_owned(), "fn f() { crate::a::g() }".to_owned());
    m.insert("d".to_owned(), "use crate::a::X;".to_owned());
    assert_eq!(cycles(&graph(&m, 1)), vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]);
}

#[test]
fn no_module_imports_itself_around_a_cycle_at_any_depth() {
    let modules = modules();
    assert!(modules.contains_key("services::register::grants"), "src/ was read: {:?}", modules.keys().collect::<Vec<_>>());
    let deepest = modules.keys().map(|m| m.split("::").count()).max().unwrap();
    let mut found = Vec::new();
    for depth in 1..=deepest {
        for c in cycles(&graph(&modules, depth)) {
            found.push(format!("depth {depth}: {}", c.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

/// Each layer uses only what is below it: faces -> services -> store, with protocol, apple and
/// the foundations (clock, config, error, metrics, pki, schema) beside.
#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let modules = modules();
    let top = graph(&modules, 1);
    let allowed: &[(&str, &[&str])] = &[
        ("protocol", &[]),
        ("apple", &[]),
        ("schema", &[]),
        ("clock", &[]),
        ("config", &[]),
        ("logging", &["config"]),
        ("metrics", &[]),
        ("pki", &["config", "protocol"]),
        ("store", &["clock", "config", "protocol", "schema"]),
        ("error", &["store", "protocol"]),
        ("services", &["apple", "clock", "config", "error", "metrics", "pki", "protocol", "schema", "store"]),
    ];
    let mut wrong = Vec::new();
    for (layer, may) in allowed {
        for used in top.get(*layer).into_iter().flatten() {
            if !may.contains(&used.as_str()) {
                wrong.push(format!("{layer} uses {used}"));
            }
        }
    }
    // No service reaches a face or the context that composes the services.
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

/// The faces call services, never the store: no face reads `ctx.store`.
#[test]
fn no_face_reaches_the_store() {
    let mut found = Vec::new();
    for (module, src) in modules() {
        if !module.starts_with("faces") && module != "faces::sweeper" {
            continue;
        }
        let flat: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
        for needle in ["ctx.store", ".store.", ".store ."] {
            if flat.contains(needle) {
                found.push(format!("{module} uses `{needle}`"));
            }
        }
    }
    assert!(found.is_empty(), "faces reaching the store:\n{}", found.join("\n"));
}
