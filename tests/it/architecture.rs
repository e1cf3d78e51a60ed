//! The floor plan, checked: the import graph of each crate has no loop, the only imports from a
//! lower layer to a higher one are `config` composing the sections that live in their
//! components, and nothing cites a document outside the repository.
//!
//! The graph is read from the sources as text, the way a reader follows them: every `use` and
//! every `crate::`/`super::`/`self::` path (or a path through a child module) in code names the
//! file that holds the module it reaches. Comments, strings and test-only code (a module
//! declared under `#[cfg(test)]`, inline or in a file of its own) are left out: a test may reach
//! anywhere. A `pub use` draws an arrow like any `use`: a `mod.rs` that re-exports a child's
//! items depends on that child, so the child must not import the `mod.rs` back (the shared
//! types live in the `mod.rs`, or in a file of their own). `contributing.md` in `docs/` states
//! the rules this enforces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One crate's sources: module path → file (relative to the crate's source folder) and code.
struct Crate {
    files: BTreeMap<Vec<String>, (String, String)>,
}

impl Crate {
    /// Reads every `.rs` file under `dir` but the test-only ones.
    fn read(dir: &Path) -> Crate {
        let mut all = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    let code = strip(&std::fs::read_to_string(&path).unwrap());
                    all.insert(module_path(&rel), (rel, code));
                }
            }
        }
        // Modules declared under `#[cfg(test)]`, and everything below them, are test code.
        let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
        for (module, (_, code)) in &all {
            for name in cfg_test_children(code) {
                let mut m = module.clone();
                m.push(name);
                test_only.insert(m);
            }
        }
        let files = all
            .into_iter()
            .filter(|(m, _)| !test_only.iter().any(|t| m.starts_with(t)))
            .map(|(m, (rel, code))| (m, (rel, cut_inline_tests(&code))))
            .collect();
        Crate { files }
    }

    /// The file that holds the longest module prefix of `path`, if any.
    fn resolve(&self, path: &[String]) -> Option<&str> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.files.get(&path[..n]).map(|(rel, _)| rel.as_str()))
    }

    /// Every arrow: file → the files it imports.
    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, (rel, code)) in &self.files {
            let children = declared_children(code);
            let mut targets = BTreeSet::new();
            for path in referenced_paths(code) {
                let Some(abs) = absolute(module, &children, &path) else {
                    continue;
                };
                if let Some(target) = self.resolve(&abs) {
                    if target != rel {
                        targets.insert(target.to_owned());
                    }
                }
            }
            out.insert(rel.clone(), targets);
        }
        out
    }
}

/// `a/b.rs` → `[a, b]`; `a/mod.rs` → `[a]`; `lib.rs`, `main.rs` → `[]`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code with comments removed and every string and char literal emptied, so that neither
/// is read as a path.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            out.push_str(&"\n".repeat(src[i..end].matches('\n').count()));
            i = end;
        } else if b[i] == b'r' && (i == 0 || !ident(b[i - 1])) && {
            let mut j = i + 1;
            while j < b.len() && b[j] == b'#' {
                j += 1;
            }
            j < b.len() && b[j] == b'"'
        } {
            let hashes = src[i + 1..].bytes().take_while(|c| *c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = src[start..]
                .find(&close)
                .map_or(b.len(), |e| start + e + close.len());
            out.push_str("\"\"");
            out.push_str(&"\n".repeat(src[i..end].matches('\n').count()));
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            out.push_str(&"\n".repeat(src[i..j.min(b.len())].matches('\n').count()));
            i = j + 1;
        } else if b[i] == b'\''
            && i + 2 < b.len()
            && (b[i + 1] == b'\\' || (b[i + 2] == b'\'' && b[i + 1] != b'\''))
        {
            // A char literal ('x', '\n', '\u{1F6D1}'); a lifetime has no closing quote.
            let end = src[i + 2..].find('\'').map_or(b.len(), |e| i + 2 + e + 1);
            out.push_str("' '");
            i = end;
        } else {
            let ch = src[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The names of the modules `code` declares in files of their own under `#[cfg(test)]`.
fn cfg_test_children(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        rest = &rest[at + "#[cfg(test)]".len()..];
        let mut item = rest.trim_start();
        while item.starts_with("#[") {
            item = item[item.find(']').map_or(item.len(), |e| e + 1)..].trim_start();
        }
        let item = item
            .strip_prefix("pub(crate) ")
            .or_else(|| item.strip_prefix("pub "))
            .unwrap_or(item);
        if let Some(decl) = item.strip_prefix("mod ") {
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                out.push(name);
            }
        }
    }
    out
}

/// The code without its inline `#[cfg(test)] mod … { … }` blocks.
fn cut_inline_tests(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = &out[at..];
        let Some(open) = after.find('{') else { break };
        let head = &after[..open];
        if !head.contains("mod ") || head.contains(';') {
            // Not an inline module (an attribute on something else): keep the code, drop
            // only the attribute so the search goes on.
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        }
        let mut depth = 0usize;
        let mut end = out.len();
        for (k, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = at + open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

/// The modules `code` declares (`mod name;`).
fn declared_children(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub(super) "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// Every path `code` names, as segments: the leaves of its `use` trees, and the paths written
/// in code.
fn referenced_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut body = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        body.push_str(&rest[..at.start]);
        let stmt = &rest[at.tree_start..at.end];
        for leaf in expand(stmt) {
            out.push(segments(&leaf));
        }
        rest = &rest[at.end + 1..];
    }
    body.push_str(rest);
    // Paths in code: `a::b` with no `::` or word character before them.
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start_ok = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        if start_ok && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
            let mut j = i;
            while j < bytes.len()
                && (bytes[j].is_ascii_alphanumeric()
                    || bytes[j] == b'_'
                    || (bytes[j] == b':' && bytes.get(j + 1) == Some(&b':')))
            {
                j += if bytes[j] == b':' { 2 } else { 1 };
            }
            let path = &body[i..j];
            if path.contains("::") {
                out.push(segments(path));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

struct UseAt {
    start: usize,
    tree_start: usize,
    end: usize,
}

/// The next `use …;` statement (`pub` or not): where it starts, where its tree starts, and
/// where its `;` is.
fn find_use(code: &str) -> Option<UseAt> {
    let mut from = 0;
    loop {
        let at = from + code[from..].find("use ")?;
        let before = code[..at].trim_end_matches(' ');
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        let prefix = before[line_start..].trim();
        let statement_start = prefix.is_empty() || prefix.starts_with("pub");
        let word_start = at == 0
            || !code.as_bytes()[at - 1].is_ascii_alphanumeric() && code.as_bytes()[at - 1] != b'_';
        if statement_start && word_start {
            let end = at + code[at..].find(';')?;
            return Some(UseAt {
                start: line_start,
                tree_start: at + "use ".len(),
                end,
            });
        }
        from = at + "use ".len();
    }
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (an `as` rename dropped).
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut cur) = (0usize, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == ',' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |e| format!("{prefix}{e}")))
        .collect()
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The absolute module path `path` names from `module`, when it names one of this crate.
fn absolute(
    module: &[String],
    children: &BTreeSet<String>,
    path: &[String],
) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    let mut base: Vec<String> = match first {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module.to_vec(),
        c if children.contains(c) => module.to_vec(),
        _ => return None,
    };
    let mut rest = path;
    if first == "crate" || first == "self" {
        rest = &path[1..];
    }
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The files of every loop, each loop with the arrows that close it.
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<(String, String)>> {
    // Tarjan's strongly connected components.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        if let Some(ws) = s.edges.get(v) {
            for w in ws {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(comp);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.as_str()).chain(bs.iter().map(String::as_str)))
        .collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let members: BTreeSet<&str> = c.into_iter().collect();
            let mut arrows = Vec::new();
            for a in &members {
                for b in edges.get(*a).into_iter().flatten() {
                    if members.contains(b.as_str()) {
                        arrows.push(((*a).to_owned(), b.clone()));
                    }
                }
            }
            arrows
        })
        .collect()
}

fn describe(loops: &[Vec<(String, String)>]) -> String {
    loops
        .iter()
        .map(|arrows| {
            arrows
                .iter()
                .map(|(a, b)| format!("  {a} -> {b}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n  --\n")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The component a file belongs to: the folder (or file) right under the source folder, and
/// one level deeper under `consumers/`, where each consumer's folder is a component of its own
/// and so is each file of the driver beside them (retention sits above the read models it
/// prunes, the driver below the consumers it runs).
fn component(rel: &str) -> String {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["consumers", sub, _, ..] => format!("consumers/{sub}"),
        ["consumers", file] => format!("consumers/{}", file.trim_end_matches(".rs")),
        [one] => one.trim_end_matches(".rs").to_owned(),
        [dir, ..] => (*dir).to_owned(),
        [] => String::new(),
    }
}

/// An import by which `config` composes a section that lives in its component: from a file of
/// `config/` to a section's own `config.rs`.
fn is_config_composition(from: &str, to: &str) -> bool {
    from.starts_with("config/") && !to.starts_with("config/") && to.ends_with("/config.rs")
}

#[test]
fn the_import_graph_of_hooklog_has_no_loop() {
    let krate = Crate::read(&root().join("src"));
    let edges = krate.edges();
    assert!(
        edges.len() > 50 && edges.values().map(BTreeSet::len).sum::<usize>() > 200,
        "the graph was not read: {} files, {} arrows",
        edges.len(),
        edges.values().map(BTreeSet::len).sum::<usize>()
    );
    let found = loops(&edges);
    assert!(
        found.is_empty(),
        "import loops in src/:\n{}",
        describe(&found)
    );
}

#[test]
fn the_import_graph_of_hooklog_replay_has_no_loop() {
    let krate = Crate::read(&root().join("replay").join("src"));
    let edges = krate.edges();
    assert!(
        edges.len() > 10,
        "the graph was not read: {} files",
        edges.len()
    );
    let found = loops(&edges);
    assert!(
        found.is_empty(),
        "import loops in replay/src/:\n{}",
        describe(&found)
    );
}

#[test]
fn only_config_composition_imports_a_higher_layer() {
    let edges = Crate::read(&root().join("src")).edges();
    // The components' graph without config's composition of sections must have an order (no
    // loop): that order is the layers, and every other arrow points down it.
    let mut components: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut composition = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            if is_config_composition(from, to) {
                composition.push(format!("{from} -> {to}"));
                continue;
            }
            let (a, b) = (component(from), component(to));
            if a != b {
                components.entry(a).or_default().insert(b);
            }
        }
    }
    let found = loops(&components);
    assert!(
        found.is_empty(),
        "components that import each other (only config may import a higher layer, and only a \
         section's own config.rs):\n{}",
        describe(&found)
    );
    assert!(
        !composition.is_empty(),
        "config composes no section: the test no longer sees what it checks"
    );
}

#[test]
fn the_checker_sees_a_loop_when_there_is_one() {
    // The two rules above pass vacuously if the reader finds no arrows; this one proves it
    // finds them, on a tree made for it.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "mod c;\nuse crate::b::Thing;\n// use crate::x;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a/c.rs"),
        "pub struct C;\n#[cfg(test)]\nmod tests {\n    use crate::b::Thing;\n}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub struct Thing;\nfn f() { let _ = \"crate::a::c\"; super::a::c::C; }\n",
    )
    .unwrap();
    let edges = Crate::read(src).edges();
    assert_eq!(edges["a/mod.rs"], BTreeSet::from(["b.rs".to_owned()]));
    assert_eq!(edges["a/c.rs"], BTreeSet::new(), "test code draws no arrow");
    assert_eq!(edges["b.rs"], BTreeSet::from(["a/c.rs".to_owned()]));
    assert!(loops(&edges).is_empty());
    std::fs::write(src.join("a/c.rs"), "use crate::b::Thing;\npub struct C;\n").unwrap();
    let found = loops(&Crate::read(src).edges());
    assert_eq!(found.len(), 1, "{}", describe(&found));
    // A re-export is an arrow too: a child that imports the mod.rs re-exporting it is a loop.
    std::fs::write(src.join("b.rs"), "pub struct Thing;\n").unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "mod c;\npub use c::C;\npub struct Shared;\n",
    )
    .unwrap();
    std::fs::write(src.join("a/c.rs"), "use super::Shared;\npub struct C;\n").unwrap();
    let found = loops(&Crate::read(src).edges());
    assert_eq!(found.len(), 1, "{}", describe(&found));
}

#[test]
fn nothing_cites_a_document_outside_the_repository() {
    // The first contract and the reference notes now live in docs/, in the project's words.
    let forms = [
        ["DESIGN", " §"].concat(),
        ["DESIGN", ".md"].concat(),
        ["ref/", "openphone.md"].concat(),
        ["ref/", "twilio.md"].concat(),
        ["ref/", "compliance.md"].concat(),
        ["ref/", "log-and-sinks.md"].concat(),
        ["../", "shared/"].concat(),
    ];
    let this = Path::new(file!()).file_name().unwrap().to_owned();
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = [
        "src", "replay", "tests", "benches", "docs", "ops", "schema", "fixtures", "fuzz",
    ]
    .iter()
    .map(|d| root().join(d))
    .chain([root().join("README.md")])
    .collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "corpus")
            {
                continue;
            }
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            continue;
        }
        if path.file_name() == Some(this.as_os_str()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if forms.iter().any(|f| line.contains(f.as_str())) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "cite docs/ instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_message_carries_the_indentation_of_a_lost_line_continuation() {
    // A long message split over lines without its trailing `\` keeps the next line's
    // indentation inside the text ("has deleted                          every record"): an
    // operator reads it in an error or an alert. A word, then a run of spaces, then a word,
    // inside one string literal on one line, is that mistake.
    let run = has_continuation_indent;
    let mut found = Vec::new();
    let mut stack = vec![root().join("src"), root().join("replay/src")];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            // Only the text between the first and the last quote of the line.
            let (Some(a), Some(b)) = (code.find('"'), code.rfind('"')) else {
                continue;
            };
            if a < b && run(&code[a + 1..b]) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, code));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a string literal holds the indentation of its next line (end the line with `\\`):\n{}",
        found.join("\n")
    );
}

/// Whether `s` has a letter or punctuation, then twelve or more spaces, then a letter: what a
/// missing `\` leaves (a table aligned with a few spaces, or a tab, is not it).
fn has_continuation_indent(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            let start = i;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let before = start.checked_sub(1).map(|j| b[j]);
            let after = b.get(i).copied();
            if i - start >= 12
                && before.is_some_and(|c| c.is_ascii_alphanumeric() || b",.;:)".contains(&c))
                && after.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'(' || c == b'`')
            {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}
