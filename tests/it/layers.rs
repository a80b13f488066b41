//! The module map in `src/lib.rs` holds: every module is in a layer, every import in `src`
//! (outside tests) points down the layers, and no two files import each other, directly or round
//! a circle. It reads the code as text: `crate::a::b` and `super::` paths, and a parent's uses of
//! its own submodules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `src/lib.rs`'s map, lowest first. A module may import from its own layer's
/// lower neighbours and any layer below, never above.
const LAYERS: &[&[&str]] = &[
    &["body", "build_info", "files", "headers"],
    &["error"],
    &["account"],
    &["config"],
    &["credentials", "token"],
    &["target"],
    &["metrics", "limits"],
    &["gateway"],
    &["upstream", "tls", "admin", "fuzzing"],
    &["proxy"],
    &["systemd", "reload", "server"],
    &["cli", "logging", "cmd"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of lib.rs's map"))
}

/// Every `.rs` file under `dir`, except test files (`tests.rs`, `*/tests/*`).
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/gateway/auth.rs` is `gateway::auth`, `src/gateway/mod.rs`
/// is `gateway`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its `#[cfg(test)]` module, comments and `macro_rules!` bodies (a
/// macro's paths belong where it is invoked).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    while let Some(start) = code.find("macro_rules!") {
        let open = start + code[start..].find('{').unwrap_or(0);
        let mut depth = 0;
        let mut end = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = open + i + 1;
                break;
            }
        }
        code.replace_range(start..end, "");
    }
    code
}

/// Paths named after `prefix` (`crate::`, `super::`): each as its segments; a `{a, b}` group
/// gives one path per member.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        if code[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        let mut segs = Vec::new();
        let mut tail = rest;
        loop {
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if end == 0 {
                break;
            }
            segs.push(tail[..end].to_owned());
            match tail[end..].strip_prefix("::") {
                Some(t) => tail = t,
                None => {
                    tail = &tail[end..];
                    break;
                }
            }
        }
        if let Some(group) = tail.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for member in group.split(',') {
                let name: String = member
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    let mut p = segs.clone();
                    p.push(name);
                    out.push(p);
                }
            }
        } else {
            out.push(segs);
        }
    }
    out
}

/// The longest prefix of `path` that names a file's module.
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

/// file module -> the file modules it imports.
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges = BTreeMap::new();
    for file in &files {
        let me = module_of(src, file);
        let code = code(&std::fs::read_to_string(file).unwrap());
        let mut uses = BTreeSet::new();
        for path in paths_after(&code, "crate::") {
            uses.extend(resolve(&path, &modules));
        }
        let parent: Vec<String> = me[..me.len().saturating_sub(1)].to_vec();
        for path in paths_after(&code, "super::") {
            let full: Vec<String> = parent.iter().cloned().chain(path).collect();
            uses.extend(resolve(&full, &modules));
        }
        // A parent's own submodules, named without `crate::` (`auth::authenticate(...)`).
        for child in modules
            .iter()
            .filter(|m| m.len() == me.len() + 1 && m.starts_with(&me))
        {
            let name = child.last().unwrap();
            if code.contains(&format!("{name}::")) {
                uses.insert(child.clone());
            }
        }
        uses.remove(&me);
        if !me.is_empty() {
            edges.insert(me, uses);
        }
    }
    edges
}

/// A circle through `start`, if there is one.
fn circle(
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    start: &Vec<String>,
) -> Option<Vec<Vec<String>>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == start {
                return Some(path);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn every_import_points_down_the_map_and_no_file_imports_round_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line.strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(
                lib.contains(&format!("[`{m}`]")),
                "lib.rs's map does not name `{m}`"
            );
            layer_of(m);
        }
    }
    let mut upward = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if from[0] != to[0] && layer_of(&to[0]) > layer_of(&from[0]) {
                upward.push(format!("{} -> {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run back up the map:\n{}",
        upward.join("\n")
    );
    for start in edges.keys() {
        if let Some(path) = circle(&edges, start) {
            let names: Vec<String> = path.iter().map(|p| p.join("::")).collect();
            panic!("import circle: {} -> {}", names.join(" -> "), names[0]);
        }
    }
    // The check can fail: the graph it read holds the pipeline's real imports.
    let proxy = edges
        .get(&vec!["proxy".to_owned()])
        .expect("src/proxy/mod.rs");
    assert!(proxy.contains(&vec!["account".to_owned()]), "{proxy:?}");
}
