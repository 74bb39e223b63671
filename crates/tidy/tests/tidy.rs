//! The workspace's source rules (ARCHITECTURE.md, "Invariants"):
//! - the Raft core, the key-value store and the replica engine are pure: no files, sockets,
//!   clocks, threads, processes, async or randomness, and only the dependencies listed here; the
//!   store and the engine use no unordered maps (their iteration order would make nodes diverge);
//! - no `dbg!` anywhere, no `println!` in the pure crates;
//! - no source file grows past `FILE_LINES_MAX`, except the few listed in `RATCHET` that are
//!   already longer: their ceiling is their length today, to be lowered as they are split.

use std::path::{Path, PathBuf};

/// What the pure crates must not use.
const IMPURE: &[&str] = &[
    "tokio",
    "std::time",
    "std::fs",
    "std::net",
    "thread::spawn",
    "thread::sleep",
    "thread::Builder",
    "std::process",
    "async fn",
    "SystemTime",
    "Instant::now",
    "thread_rng",
    "println!(",
];

/// Unordered collections, which the replicated state machines must not iterate.
const UNORDERED: &[&str] = &["HashMap", "HashSet"];

/// The pure crates, what else each must not use, and the dependencies each may have.
const PURE: &[(&str, &[&str], &[&str])] = &[
    ("raft", &[], &["bytes", "thiserror"]),
    ("kv", UNORDERED, &["bytes", "thiserror", "prost", "crc32c"]),
    (
        "replica",
        UNORDERED,
        &[
            "raftkv-raft",
            "raftkv-kv",
            "bytes",
            "thiserror",
            "prost",
            "serde",
        ],
    ),
];

/// Longest source file, in lines (STYLE.md: one concept per small file).
const FILE_LINES_MAX: usize = 800;

/// Files already past `FILE_LINES_MAX`, with their ceiling (their length when the ratchet was
/// set). Lower a ceiling when a file shrinks; never raise one.
const RATCHET: &[(&str, usize)] = &[
    ("crates/sim/src/sim.rs", 1_152),
    ("crates/sim/src/node.rs", 892),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The lines of `path` that use one of `words` outside a comment, as `file:line: word`.
fn uses(path: &Path, words: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("a readable source file");
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for word in words {
            if code.contains(word) {
                found.push(format!("{}:{}: uses `{word}`", path.display(), n + 1));
            }
        }
    }
    found
}

#[test]
fn the_core_the_store_and_the_engine_stay_pure() {
    let root = workspace();
    let mut problems = Vec::new();
    for (krate, extra, _) in PURE {
        let words: Vec<&str> = IMPURE.iter().chain(extra.iter()).copied().collect();
        for path in sources(&root.join("crates").join(krate).join("src")) {
            problems.extend(uses(&path, &words));
        }
    }
    assert!(
        problems.is_empty(),
        "pure crates must stay pure:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_pure_crates_depend_on_no_runtime_crates() {
    let root = workspace();
    for (krate, _, allowed) in PURE {
        let manifest = std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml"))
            .expect("a manifest");
        let deps = manifest
            .split("\n[dependencies]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap_or("");
        for line in deps
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            assert!(
                allowed.contains(&name),
                "unexpected dependency of {krate}: {name}"
            );
        }
    }
}

#[test]
fn no_debugging_leftovers() {
    let root = workspace();
    let mut problems = Vec::new();
    for path in sources(&root.join("crates")) {
        if path.ends_with("tidy/tests/tidy.rs") {
            continue;
        }
        problems.extend(uses(&path, &["dbg!("]));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_file_grows_past_its_ratchet() {
    let root = workspace();
    let mut problems = Vec::new();
    for path in sources(&root.join("crates")) {
        let relative = path
            .strip_prefix(&root)
            .expect("under the workspace")
            .to_string_lossy()
            .replace('\\', "/");
        let ceiling = RATCHET
            .iter()
            .find(|(file, _)| *file == relative)
            .map_or(FILE_LINES_MAX, |(_, lines)| *lines);
        let lines = std::fs::read_to_string(&path)
            .expect("a readable source file")
            .lines()
            .count();
        if lines > ceiling {
            problems.push(format!(
                "{relative}: {lines} lines, over its ceiling of {ceiling}: split it by concept"
            ));
        }
    }
    for (file, _) in RATCHET {
        assert!(
            root.join(file).exists(),
            "{file} is gone: remove it from RATCHET"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
