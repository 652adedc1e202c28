//! No file of the project's crates (`model`, `trainer`, `web-demo`) imports, directly or
//! through other files, a file that imports it. Read from the sources: every `use` tree and
//! every `crate::`/`super::` path in code, resolved to the file that defines the item (through
//! `pub use` re-exports), so a new import that closes a loop fails here. The layers are in
//! `docs/architecture.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's source files by module path (`[]` is `lib.rs`, `["train", "stop"]` is
/// `train/stop.rs`), with their text.
struct Sources {
    files: BTreeMap<Vec<String>, String>,
}

impl Sources {
    fn read(src: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let relative = path.strip_prefix(src).unwrap().with_extension("");
                    let mut module: Vec<String> = relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    if matches!(
                        module.last().map(String::as_str),
                        Some("mod" | "lib" | "main")
                    ) {
                        module.pop();
                    }
                    if path.file_name().is_some_and(|n| n == "main.rs") {
                        continue; // the binary's root: it only calls into the library
                    }
                    files.insert(module, std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        Self { files }
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.files.contains_key(path)
    }

    /// The `use` statements of `module`'s file, expanded to absolute paths, and whether each
    /// is a re-export (`pub use`).
    fn uses(&self, module: &[String]) -> Vec<(Vec<String>, bool)> {
        let text = code(&self.files[module]);
        let mut out = Vec::new();
        for (i, _) in text.match_indices("use ") {
            let before = text[..i].trim_end();
            let at_statement = before.is_empty()
                || before.ends_with(';')
                || before.ends_with('{')
                || before.ends_with('}')
                || before.ends_with(']')
                || before.ends_with("pub")
                || before.ends_with(')');
            if !at_statement || text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let public = before.ends_with("pub") || before.ends_with(')');
            let end = i + text[i..].find(';').unwrap();
            let tree = text[i + 4..end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let in_tests = is_in_tests(&self.files[module], &text, i);
            for path in expand(&tree) {
                if let Some(absolute) = self.absolute(module, &path, in_tests) {
                    out.push((absolute, public));
                }
            }
        }
        out
    }

    /// `path` written in `module` as an absolute module path, or `None` for other crates.
    fn absolute(&self, module: &[String], path: &[String], in_tests: bool) -> Option<Vec<String>> {
        let mut base: Vec<String> = module.to_vec();
        if in_tests {
            base.push("tests".into()); // `super` inside `mod tests` is the file itself
        }
        let mut rest = path;
        match path.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &path[1..];
            }
            Some("self") => rest = &path[1..],
            Some("super") => {
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                let mut child = base.clone();
                child.push(first.to_string());
                if !self.is_module(&child) {
                    return None;
                }
            }
            None => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file (module path) that defines the item or module at `path`, following `pub use`
    /// re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Vec<String> {
        let mut module = path.to_vec();
        while !self.is_module(&module) {
            module.pop();
        }
        if module.len() < path.len() && depth < 16 {
            let name = &path[module.len()];
            for (target, public) in self.uses(&module) {
                if public && target.last() == Some(name) && target != path {
                    return self.resolve(&target, depth + 1);
                }
            }
        }
        module
    }

    /// Every file that `module`'s file imports.
    fn imports(&self, module: &[String]) -> BTreeSet<Vec<String>> {
        let source = &self.files[module];
        let text = code(source);
        let mut paths: Vec<Vec<String>> = self.uses(module).into_iter().map(|(p, _)| p).collect();
        // Modules brought into scope by name (`use crate::train::{self, …}` → `train`).
        let aliases: BTreeMap<String, Vec<String>> = paths
            .iter()
            .filter(|p| self.is_module(p))
            .filter_map(|p| Some((p.last()?.clone(), p.clone())))
            .collect();
        // Paths in code: `crate::a::b(…)`, `super::c::D`, `train::StopReason`.
        let roots: Vec<String> = ["crate", "super"]
            .into_iter()
            .map(String::from)
            .chain(aliases.keys().cloned())
            .collect();
        for root in roots {
            let root_path = format!("{root}::");
            for (i, _) in text.match_indices(&root_path) {
                if text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let written: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let segments: Vec<String> = written
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if segments.len() < 2 {
                    continue; // `crate::{…}`: a use tree, read above
                }
                if let Some(alias) = aliases.get(&root) {
                    let mut absolute = alias.clone();
                    absolute.extend(segments[1..].iter().cloned());
                    paths.push(absolute);
                    continue;
                }
                let in_tests = is_in_tests(source, &text, i);
                if let Some(absolute) = self.absolute(module, &segments, in_tests) {
                    paths.push(absolute);
                }
            }
        }
        paths
            .iter()
            .map(|p| self.resolve(p, 0))
            .filter(|file| file != module)
            .collect()
    }
}

/// `text` without comments and string literals' contents (doc links are not imports).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut previous = ' ';
        let mut kept = String::new();
        for (i, c) in line.char_indices() {
            if !in_string && c == '/' && line[i..].starts_with("//") {
                break;
            }
            let char_literal = previous == '\'' && line[i + 1..].starts_with('\'');
            if c == '"' && previous != '\\' && !char_literal {
                in_string = !in_string;
            } else if !in_string {
                kept.push(c);
            }
            previous = c;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Whether position `i` of `code` (made from `source`) is inside the file's `mod tests`.
fn is_in_tests(source: &str, code_text: &str, i: usize) -> bool {
    let marker = "mod tests {";
    match (source.find("#[cfg(test)]"), code_text.find(marker)) {
        (Some(_), Some(start)) => i > start,
        _ => false,
    }
}

/// The paths a `use` tree names: `a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        let tree = tree.trim().trim_start_matches("::");
        match tree.find('{') {
            Some(open) => {
                let head: Vec<String> = tree[..open]
                    .split("::")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                let mut base = prefix.to_vec();
                base.extend(head);
                let inner = &tree[open + 1..tree.rfind('}').unwrap()];
                let mut depth = 0;
                let mut start = 0;
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            walk(&base, &inner[start..i], out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                walk(&base, &inner[start..], out);
            }
            None => {
                let plain = tree.split(" as ").next().unwrap();
                let mut path = prefix.to_vec();
                for segment in plain.split("::").map(str::trim).filter(|s| !s.is_empty()) {
                    if segment == "self" {
                        continue;
                    }
                    if segment == "*" {
                        break;
                    }
                    path.push(segment.to_string());
                }
                if !path.is_empty() {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&[], tree, &mut out);
    out
}

/// A loop through `node`, if the graph has one reachable from it.
fn cycle(
    graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    node: &Vec<String>,
    path: &mut Vec<Vec<String>>,
    done: &mut BTreeSet<Vec<String>>,
) -> Option<Vec<Vec<String>>> {
    if let Some(start) = path.iter().position(|n| n == node) {
        let mut found = path[start..].to_vec();
        found.push(node.clone());
        return Some(found);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.clone());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(found) = cycle(graph, next, path, done) {
            return Some(found);
        }
    }
    path.pop();
    done.insert(node.clone());
    None
}

fn graph_of(crate_dir: &str) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    let sources = Sources::read(&src);
    sources
        .files
        .keys()
        .map(|module| (module.clone(), sources.imports(module)))
        .collect()
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("::")
    }
}

#[test]
fn no_file_imports_a_file_that_imports_it() {
    for crate_dir in ["model", "trainer", "web-demo"] {
        let graph = graph_of(crate_dir);
        let mut done = BTreeSet::new();
        for module in graph.keys() {
            if let Some(found) = cycle(&graph, module, &mut Vec::new(), &mut done) {
                let names: Vec<String> = found.iter().map(|m| name(m)).collect();
                panic!("an import loop in {crate_dir}: {}", names.join(" → "));
            }
        }
    }
}

#[test]
fn the_reader_sees_every_kind_of_import() {
    let graph = graph_of("trainer");
    let imports = |file: &[&str]| -> Vec<String> {
        let key: Vec<String> = file.iter().map(|s| s.to_string()).collect();
        graph[&key].iter().map(|m| name(m)).collect()
    };
    // `use super::…` in train/trainer.rs, and `crate::…` in code.
    let trainer = imports(&["train", "trainer"]);
    for file in ["train::lookahead", "train::config", "data::batcher"] {
        assert!(trainer.contains(&file.to_string()), "{trainer:?}");
    }
    // A re-export is followed to the file that defines the item: the search's worker names
    // `train::StopReason`, defined in train/stop.rs.
    let worker = imports(&["search", "worker"]);
    assert!(worker.contains(&"train::stop".to_string()), "{worker:?}");
    // The leaves: the backend choice imports nothing of the crate but the leaf that names
    // option values; the file layer only the backend choice.
    assert!(imports(&["option_name"]).is_empty());
    assert_eq!(imports(&["backend"]), ["option_name"]);
    assert_eq!(imports(&["io"]), ["backend"]);
    // Commands sit above the layers they use: only the command line (and the search, which
    // runs commands) imports them.
    for (file, imported) in &graph {
        let top = file.first().map(String::as_str).unwrap_or("");
        if !["cmd", "cli", "search"].contains(&top) {
            let commands: Vec<String> = imported
                .iter()
                .filter(|m| m.first().is_some_and(|t| t == "cmd"))
                .map(|m| name(m))
                .collect();
            assert!(commands.is_empty(), "{} imports {commands:?}", name(file));
        }
    }
    // And the model crate is read too.
    let model = graph_of("model");
    assert!(model.len() >= 15, "{:?}", model.keys());
}

#[test]
fn use_trees_expand_to_their_paths() {
    let paths = expand("super::{a, b::{c, self},\n d::E as F}");
    let text: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(text, ["super::a", "super::b::c", "super::b", "super::d::E"]);
}
