//! Consul's blocking queries: a read with `?index=N&wait=D` waits until the key (or prefix) it
//! reads changes after index N, or until D has passed, then answers as the read would.
//!
//! The wait is a store watch from revision N + 1 on the read's keys, fed by the node's
//! `WatchPump` like every watch stream: nothing runs for a waiting query until a write touches
//! its keys, so thousands of them cost a watch each and no polling. A change already made after
//! N (the watch reads it from history) or history compacted past N answers at once; an index
//! above the store's revision (the cluster was restored, say) is reset as Consul resets it: the
//! read answers at once with the current index.
//!
//! Consul's session reads block too (`wait_for_sessions`), on the sessions' own index: they
//! answer once it differs from N (it moved on, or N is not an index this store gave).
//!
//! Limits: a wait defaults to `WAIT_DEFAULT` and is capped at `WAIT_MAX`, plus Consul's jitter
//! of up to 1/16 of it (so many clients do not come back at once); waiting key reads count
//! against the node's watches, and every waiting read against the client's
//! `--watches-per-client-max`.

use std::net::IpAddr;
use std::time::Duration;

use raftkv_kv::{KvError, RangeRequest, WatchRequest};

use super::Api;
use super::error::ApiError;
use super::watch::WatchGuard;
use super::watch_pump::WatchPump;

/// How long a blocking query waits without `?wait` (Consul's default).
pub const WAIT_DEFAULT: Duration = Duration::from_secs(5 * 60);
/// The longest wait (Consul's cap).
pub const WAIT_MAX: Duration = Duration::from_secs(10 * 60);
/// A wait is lengthened by up to this fraction of it, at random.
const JITTER_FRACTION: u32 = 16;

/// A Go-style duration (`150ms`, `10s`, `5m`, `1h`, `1m30s`; a bare number is seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(number * unit).ok()?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// The wait of `?wait=` (default, capped) with Consul's jitter.
pub fn wait_of(text: Option<&str>) -> Result<Duration, ApiError> {
    let wait = match text {
        None => WAIT_DEFAULT,
        Some(text) => parse_duration(text)
            .ok_or_else(|| ApiError::bad_request(format!("wait `{text}` is not a duration")))?,
    };
    let wait = wait.min(WAIT_MAX);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = (wait / JITTER_FRACTION).mul_f64(f64::from(nanos % 1000) / 1000.0);
    Ok(wait + jitter)
}

/// Waits until a key of `range` changes after `index`, at most `wait` (see the module docs).
pub async fn wait_for_change(
    api: &Api,
    client: IpAddr,
    range: &RangeRequest,
    index: u64,
    wait: Duration,
) -> Result<(), ApiError> {
    let current = api.service.read(|state| state.kv.revision());
    if index > u64::try_from(current).unwrap_or(0) {
        return Ok(());
    }
    let request = WatchRequest {
        key: range.key.clone(),
        range_end: range.range_end.clone(),
        start_revision: i64::try_from(index + 1).unwrap_or(i64::MAX),
        prev_kv: false,
    };
    let per_client_max = api.service.config().watches_per_client_max;
    let slot = api.watches.admit(client, per_client_max)?;
    let id = match api.service.read(|state| state.kv.watch_create(&request)) {
        Ok(id) => id,
        // History since the index is gone: something may have changed; answer now.
        Err(KvError::Compacted { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let (lines_out, mut lines_in) = WatchPump::channel();
    api.watches.register(id, lines_out);
    let _guard = WatchGuard::new(api.clone(), id, slot);
    let mut stopping = api.service.shared().stopping.subscribe();
    tokio::select! {
        _ = tokio::time::timeout(wait, lines_in.recv()) => {}
        _ = stopping.wait_for(|&stopping| stopping) => {}
    }
    Ok(())
}

/// A sessions index as Consul's session reads show it: at least 1 (as Consul's indexes are, so
/// a client never blocks on 0, which answers at once).
fn shown(published: u64) -> u64 {
    published.max(1)
}

/// The index Consul's session reads answer with: the sessions index the driver last published.
pub fn sessions_index(api: &Api) -> u64 {
    shown(*api.service.shared().sessions_index.borrow())
}

/// Waits until the lock sessions change after `index` (a session created or ended), at most
/// `wait`: the driver publishes the sessions index after each applied batch and wakes the
/// waiting reads only when it changed, so nothing runs for them otherwise. An index other than
/// the current one (past it, or reset by a restore) answers at once. Waiting reads count
/// against the client's `--watches-per-client-max`.
pub async fn wait_for_sessions(
    api: &Api,
    client: IpAddr,
    index: u64,
    wait: Duration,
) -> Result<(), ApiError> {
    let per_client_max = api.service.config().watches_per_client_max;
    let _slot = api.watches.admit(client, per_client_max)?;
    let shared = api.service.shared().clone();
    let mut published = shared.sessions_index.subscribe();
    let mut stopping = shared.stopping.subscribe();
    let moved = published.wait_for(|&current| shown(current) != index);
    tokio::select! {
        _ = tokio::time::timeout(wait, moved) => {}
        _ = stopping.wait_for(|&stopping| stopping) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("150ms"), Some(Duration::from_millis(150)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("s"), None);
        let huge = "10000000000000000000s10000000000000000000s";
        assert_eq!(parse_duration(huge), None, "an overflow is not a duration");
    }

    #[test]
    fn a_wait_is_capped_and_jittered_by_at_most_a_sixteenth() {
        let capped = wait_of(Some("1h")).unwrap();
        assert!(capped >= WAIT_MAX && capped <= WAIT_MAX + WAIT_MAX / 16);
        let default = wait_of(None).unwrap();
        assert!(default >= WAIT_DEFAULT && default <= WAIT_DEFAULT + WAIT_DEFAULT / 16);
        assert!(wait_of(Some("soon")).is_err());
    }
}
