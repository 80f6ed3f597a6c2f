//! The crate's modules import one another without loops: data flows one way
//! (ARCHITECTURE.md). Reads `src/` (not the binary), takes every
//! `crate::...` and `super::...` path in each file's code (comments, string
//! literals and `#[cfg(test)] mod tests` left out; a `mod.rs`'s plain `use
//! child::...` counted, its `pub use` re-exports resolved to the file that
//! defines the name), and fails on the first cycle of files it finds,
//! printing it. Needs no GPU.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`crate::gpu::model`) of every file under `src/`, but the binary.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "bin" {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            let name = std::iter::once("crate".to_string())
                .chain(parts)
                .collect::<Vec<_>>()
                .join("::");
            (name, p)
        })
        .collect()
}

/// The code of a file: no comments, no string or char literals' contents, no
/// unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if b[i] == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == '\'' && b.get(i + 2) == Some(&'\'') {
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &[char], mut i: usize) -> (String, usize) {
    let mut id = String::new();
    while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
        id.push(s[i]);
        i += 1;
    }
    (id, i)
}

/// Every path `head::a::b...` in `code` (groups `head::{a, b::c}` expanded
/// one level), as segment lists after `head`.
fn paths(code: &str, head: &str) -> Vec<Vec<String>> {
    let s: Vec<char> = code.chars().collect();
    let h: Vec<char> = format!("{head}::").chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + h.len() <= s.len() {
        let starts = s[i..i + h.len()] == h[..]
            && (i == 0 || !(s[i - 1].is_alphanumeric() || s[i - 1] == '_' || s[i - 1] == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i + h.len();
        let mut segs = Vec::new();
        loop {
            if s.get(j) == Some(&'{') {
                let mut depth = 0;
                let mut k = j;
                let mut item_start = true;
                while k < s.len() {
                    match s[k] {
                        '{' => {
                            depth += 1;
                            item_start = depth == 1;
                        }
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => item_start = true,
                        c if item_start && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                            let (id, e) = ident_at(&s, k);
                            let mut p = segs.clone();
                            p.push(id);
                            out.push(p);
                            item_start = false;
                            k = e;
                            continue;
                        }
                        _ => {}
                    }
                    k += 1;
                }
                j = k;
                break;
            }
            let (id, e) = ident_at(&s, j);
            if id.is_empty() {
                break;
            }
            segs.push(id);
            j = e;
            if s.get(j) == Some(&':') && s.get(j + 1) == Some(&':') {
                j += 2;
            } else {
                break;
            }
        }
        if !segs.is_empty() && s.get(i + h.len()) != Some(&'{') {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

fn parent(m: &str) -> String {
    m.rsplit_once("::")
        .map_or("crate".into(), |(p, _)| p.to_string())
}

#[test]
fn no_module_imports_form_a_loop() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let texts: BTreeMap<String, String> = mods
        .iter()
        .map(|(m, p)| (m.clone(), std::fs::read_to_string(p).unwrap()))
        .collect();
    // `pub use` re-exports of mod.rs / lib.rs files: (module, name) -> module path of its origin.
    let mut reexports: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (m, t) in &texts {
        for line in code(t).lines() {
            let l = line.trim();
            let Some(rest) = l
                .strip_prefix("pub use ")
                .or_else(|| l.strip_prefix("pub(crate) use "))
            else {
                continue;
            };
            let rest = rest.trim_end_matches(';');
            let (base, names): (&str, Vec<&str>) = match rest.split_once("::{") {
                Some((b, n)) => (
                    b,
                    n.trim_end_matches('}').split(',').map(str::trim).collect(),
                ),
                None => match rest.rsplit_once("::") {
                    Some((b, n)) => (b, vec![n]),
                    None => continue,
                },
            };
            let base_segs: Vec<String> = base.split("::").map(String::from).collect();
            for n in names.into_iter().filter(|n| !n.is_empty()) {
                let n = n.split(" as ").next().unwrap().trim();
                let mut origin = vec![m.clone()];
                origin.extend(base_segs.iter().cloned());
                reexports.insert((m.clone(), n.to_string()), origin);
            }
        }
    }
    // Resolve `start` + segments to the deepest module file they name.
    let resolve = |start: String, segs: &[String]| -> Option<String> {
        let mut cur = start;
        for s in segs {
            let next = format!("{cur}::{s}");
            if mods.contains_key(&next) {
                cur = next;
                continue;
            }
            if let Some(origin) = reexports.get(&(cur.clone(), s.clone())) {
                // `pub use a::b::Name` in `cur`: relative to cur, or crate/super.
                let mut o = match origin[1].as_str() {
                    "crate" => "crate".to_string(),
                    "super" => parent(&origin[0]),
                    _ => origin[0].clone(),
                };
                let skip = if origin[1] == "crate" || origin[1] == "super" {
                    2
                } else {
                    1
                };
                for seg in &origin[skip..] {
                    let next = format!("{o}::{seg}");
                    if mods.contains_key(&next) {
                        o = next;
                    }
                }
                return Some(o);
            }
            break;
        }
        Some(cur)
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, t) in &texts {
        let c = code(t);
        let is_dir = mods[m]
            .file_name()
            .is_some_and(|f| f == "mod.rs" || f == "lib.rs");
        let mut targets = BTreeSet::new();
        for p in paths(&c, "crate") {
            targets.extend(resolve("crate".into(), &p));
        }
        // `super` is the parent module, for a plain file and a mod.rs alike.
        let sup = parent(m);
        for p in paths(&c, "super") {
            targets.extend(resolve(sup.clone(), &p));
        }
        if is_dir {
            // Plain `use child::...` (not `pub use`) in a mod.rs is a real dependency.
            for line in c.lines() {
                let l = line.trim();
                if let Some(rest) = l.strip_prefix("use ") {
                    let first = rest.split("::").next().unwrap_or("");
                    let child = format!("{m}::{first}");
                    if mods.contains_key(&child) {
                        let segs: Vec<String> = rest
                            .trim_end_matches(';')
                            .split("::")
                            .map(|s| s.trim_matches(|c| c == '{' || c == '}').to_string())
                            .collect();
                        targets.extend(resolve(m.clone(), &segs));
                    }
                }
            }
        }
        targets.remove(m);
        edges.insert(m.clone(), targets);
    }
    // Depth-first search for a cycle.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[i..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, &edges, &mut state, &mut Vec::new()) {
                panic!("an import loop: {}", c.join(" -> "));
            }
        }
    }
    // The checker sees the edges it should (it cannot pass vacuously).
    assert!(edges["crate::gpu::model"].contains("crate::gpu::plan"));
    assert!(edges["crate::gpu::plan"].contains("crate::gpu::record"));
    assert!(edges["crate::cpu::layer"].contains("crate::cpu::recur"));
    assert!(
        edges["crate::device"].contains("crate::gpu::context"),
        "{:?}",
        edges["crate::device"]
    );
    assert!(
        edges["crate::cpu"].contains("crate::cpu::layer"),
        "{:?}",
        edges["crate::cpu"]
    );
}
