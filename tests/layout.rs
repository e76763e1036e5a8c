//! The module layout as `docs/architecture.md` states it: dependencies between top-level modules
//! point one way, and no source file grows past what a reader holds in mind without saying why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines of non-test code a file may have unless its header says why it needs more.
const MAX_LINES: usize = 620;
/// What a file that needs more says in its first lines.
const LONG_BECAUSE: &str = "Long because";

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code before its unit tests; test-only files have none.
fn code_of(path: &Path) -> Vec<String> {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .map(str::to_string)
        .collect()
}

/// `src/a/b.rs` and `src/a.rs` belong to `a`.
fn module_of(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

/// Top-level module -> the top-level modules its non-test code names through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let module = module_of(&root, &path);
        // Test fixtures are only compiled into unit tests.
        if module == "fixtures" {
            continue;
        }
        let entry = edges.entry(module.clone()).or_default();
        for line in code_of(&path) {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    entry.insert(name);
                }
            }
        }
    }
    edges
}

fn path_between(
    edges: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in edges.get(from).into_iter().flatten() {
        if next == to {
            return Some(vec![from.to_string(), to.to_string()]);
        }
        if seen.insert(next.clone()) {
            if let Some(mut rest) = path_between(edges, next, to, seen) {
                rest.insert(0, from.to_string());
                return Some(rest);
            }
        }
    }
    None
}

#[test]
fn top_level_modules_depend_on_each_other_one_way() {
    let edges = graph();
    for (module, uses) in &edges {
        for used in uses {
            if let Some(back) = path_between(&edges, used, module, &mut BTreeSet::new()) {
                panic!("{module} uses {used}, and {} leads back", back.join(" -> "));
            }
        }
    }
    // The direction docs/architecture.md promises, for the modules it names.
    let never = [
        ("twilio", "api"),
        ("twilio", "page"),
        ("page", "controllers"),
        ("page", "pipeline"),
        ("pipeline", "controllers"),
        ("sources", "controllers"),
        ("routing", "pipeline"),
        ("escalation", "page"),
        ("api", "routing"),
    ];
    for (from, to) in never {
        let mut seen = BTreeSet::new();
        assert!(
            path_between(&edges, from, to, &mut seen).is_none(),
            "{from} must not depend on {to}"
        );
    }
    for (module, uses) in &edges {
        assert!(
            !uses.contains("operator") || module == "cli",
            "only the CLI starts the operator; {module} uses it"
        );
        assert!(!uses.contains("cli"), "{module} uses the CLI");
    }
}

#[test]
fn no_source_file_is_longer_than_a_reader_holds_without_saying_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut long = Vec::new();
    for path in files {
        let code = code_of(&path);
        let says_why = code.iter().take(15).any(|l| l.contains(LONG_BECAUSE));
        if code.len() > MAX_LINES && !says_why {
            long.push(format!("{} ({} lines)", path.display(), code.len()));
        }
    }
    assert!(
        long.is_empty(),
        "split these or say why at the top: {long:?}"
    );
}

/// A merge that went wrong leaves its markers behind, and a Rust file with one fails to build
/// but a chart, a script or a doc does not: they would ship broken.
#[test]
fn no_tracked_file_holds_a_merge_conflict_marker() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output();
    let Ok(listed) = listed.map(|o| o.stdout).map(String::from_utf8) else {
        panic!("git ls-files failed in {}", root.display());
    };
    let Ok(files) = listed else {
        panic!("git ls-files printed a path that is not UTF-8");
    };
    let markers = [format!("{} ", "<".repeat(7)), format!("{} ", ">".repeat(7))];
    let mut found = Vec::new();
    let mut read = 0;
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        // Binary files and files deleted in the work tree have no lines to check.
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        read += 1;
        for (number, line) in text.lines().enumerate() {
            if markers.iter().any(|m| line.starts_with(m.as_str())) {
                found.push(format!("{file}:{}", number + 1));
            }
        }
    }
    assert!(
        read > 100,
        "only {read} tracked files read: is this a git checkout?"
    );
    assert!(found.is_empty(), "merge conflict markers at {found:?}");
}
