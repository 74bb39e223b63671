//! The state machine stays pure (ARCHITECTURE.md, "Architecture invariant"): no files, sockets,
//! clocks, threads, async or randomness inside `crates/kv/src`, no unordered maps (their
//! iteration order would make nodes diverge), no debugging leftovers, no overlong files.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::time",
    "std::fs",
    "std::net",
    "thread::spawn",
    "std::process",
    "async fn",
    "SystemTime",
    "Instant::now",
    "thread_rng",
    "HashMap",
    "HashSet",
    "dbg!(",
    "println!(",
];

/// Longest file allowed, in lines (STYLE.md: past ~1,500 is a smell).
const FILE_LINES_MAX: usize = 800;

fn check_dir(dir: &Path, problems: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            check_dir(&path, problems);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    problems.push(format!("{}:{}: uses `{word}`", path.display(), n + 1));
                }
            }
        }
        let lines = text.lines().count();
        if lines > FILE_LINES_MAX {
            problems.push(format!("{}: {lines} lines", path.display()));
        }
    }
}

#[test]
fn kv_has_no_io_clocks_threads_or_unordered_maps() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    check_dir(&src, &mut problems);
    assert!(
        problems.is_empty(),
        "the state machine must stay pure:\n{}",
        problems.join("\n")
    );
}

#[test]
fn kv_depends_on_no_runtime_crates() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or("");
    for line in deps.lines().filter(|l| !l.trim().is_empty()) {
        let name = line.split(['=', '.']).next().unwrap_or("").trim();
        assert!(
            ["bytes", "thiserror", "prost", "crc32c"].contains(&name),
            "unexpected dependency: {name}"
        );
    }
}
