//! Who may use the peer port, decided when a connection is accepted, before it holds a handshake
//! slot: a connection from an address that is not a member's is refused (with `--peer-sources
//! members`, the default), and an address whose handshakes kept failing is refused for a while.
//! A member's address is never refused here (its handshake still proves who it is).
//!
//! The members' addresses are their peer URLs' hosts, resolved again every
//! `PEER_SOURCES_REFRESH_INTERVAL`; while any of them cannot be resolved, no address is refused
//! for not being a member's.
//!
//! Invariants: at most `PEER_FAILURE_SOURCES_MAX` addresses are tracked; an address is refused
//! for failures only after `PEER_FAILURES_BEFORE_REFUSAL` failed handshakes in a row, for
//! `PEER_FAILURE_REFUSAL`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::transport::PeerAddrs;

/// How often the members' peer hosts are resolved again.
pub const PEER_SOURCES_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// Time allowed to resolve the members' peer hosts.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed handshakes in a row after which an address is refused for a while.
pub const PEER_FAILURES_BEFORE_REFUSAL: u32 = 5;
/// How long an address whose handshakes kept failing is refused.
pub const PEER_FAILURE_REFUSAL: Duration = Duration::from_secs(30);
/// Addresses whose failures are tracked at once (the oldest records go first).
pub const PEER_FAILURE_SOURCES_MAX: usize = 4096;

/// Which addresses may open peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerSources {
    /// Only the members' (resolved from their peer URLs).
    #[default]
    Members,
    /// Any address (for members that connect from another address than their peer URL's, e.g.
    /// behind NAT); repeated failures are still refused.
    Any,
}

impl FromStr for PeerSources {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "members" => Ok(PeerSources::Members),
            "any" => Ok(PeerSources::Any),
            other => Err(format!(
                "peer sources must be members or any, not `{other}`"
            )),
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a member's address.
    NotAMember,
    /// Its recent handshakes failed.
    RepeatedFailures,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::NotAMember => "not a member's address (--peer-sources members)",
            Refusal::RepeatedFailures => "its last handshakes failed; refused for a while",
        })
    }
}

/// The accept-time filter of the peer port (module docs).
#[derive(Debug)]
pub struct SourceFilter {
    policy: PeerSources,
    state: Mutex<FilterState>,
}

#[derive(Debug, Default)]
struct FilterState {
    /// The members' addresses; `None` until resolved, or while one fails to resolve.
    member_ips: Option<BTreeSet<IpAddr>>,
    /// Handshake failures by address.
    failures: BTreeMap<IpAddr, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Failed handshakes in a row.
    count: u32,
    /// When the last one happened (the oldest records are dropped first).
    last: Instant,
}

impl SourceFilter {
    /// A filter with `policy` that knows no member address yet.
    pub fn new(policy: PeerSources) -> Self {
        SourceFilter {
            policy,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, FilterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a connection from `ip` may go on to its handshake.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let state = self.state();
        match state.member_ips.as_ref().map(|ips| ips.contains(&ip)) {
            Some(true) => return Ok(()),
            Some(false) if self.policy == PeerSources::Members => {
                return Err(Refusal::NotAMember);
            }
            _ => {}
        }
        match state.failures.get(&ip) {
            Some(f)
                if f.count >= PEER_FAILURES_BEFORE_REFUSAL
                    && now.duration_since(f.last) < PEER_FAILURE_REFUSAL =>
            {
                Err(Refusal::RepeatedFailures)
            }
            _ => Ok(()),
        }
    }

    /// A handshake from `ip` failed.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut state = self.state();
        if !state.failures.contains_key(&ip)
            && state.failures.len() >= PEER_FAILURE_SOURCES_MAX
            && let Some(oldest) = state
                .failures
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(ip, _)| *ip)
        {
            state.failures.remove(&oldest);
        }
        let failures = state.failures.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
        });
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
    }

    /// A handshake from `ip` succeeded.
    pub fn succeeded(&self, ip: IpAddr) {
        self.state().failures.remove(&ip);
    }

    /// Sets the members' addresses (`None`: unknown, refuse no address for not being one).
    pub fn set_member_ips(&self, ips: Option<BTreeSet<IpAddr>>) {
        self.state().member_ips = ips;
    }

    /// Resolves the members' peer hosts now and every `PEER_SOURCES_REFRESH_INTERVAL` (run as
    /// a task).
    pub async fn refresh(self: Arc<Self>, addrs: PeerAddrs) {
        let mut unresolved_logged = false;
        loop {
            let hosts: Vec<String> = addrs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            let mut ips = BTreeSet::new();
            let mut unresolved = None;
            for host in hosts {
                let resolved =
                    tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(host.as_str()))
                        .await;
                match resolved {
                    Ok(Ok(resolved)) => ips.extend(resolved.map(|a| a.ip())),
                    _ => unresolved = Some(host.clone()),
                }
            }
            match unresolved {
                Some(host) => {
                    if !unresolved_logged {
                        tracing::warn!(
                            %host,
                            "cannot resolve a member's peer host: peer connections are not \
                             filtered by address until it resolves"
                        );
                        unresolved_logged = true;
                    }
                    self.set_member_ips(None);
                }
                None => {
                    unresolved_logged = false;
                    self.set_member_ips(Some(ips));
                }
            }
            tokio::time::sleep(PEER_SOURCES_REFRESH_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        [10, 0, 0, last].into()
    }

    fn filter(policy: PeerSources) -> SourceFilter {
        let filter = SourceFilter::new(policy);
        filter.set_member_ips(Some([ip(1), ip(2)].into()));
        filter
    }

    #[test]
    fn a_non_member_address_is_refused_only_when_members_are_known() {
        let now = Instant::now();
        let members = filter(PeerSources::Members);
        assert_eq!(members.check(ip(1), now), Ok(()));
        assert_eq!(members.check(ip(9), now), Err(Refusal::NotAMember));
        members.set_member_ips(None);
        assert_eq!(members.check(ip(9), now), Ok(()), "unknown members: admit");
        assert_eq!(filter(PeerSources::Any).check(ip(9), now), Ok(()));
    }

    #[test]
    fn repeated_failures_are_refused_for_a_while_but_never_a_members() {
        let now = Instant::now();
        let any = filter(PeerSources::Any);
        for _ in 0..PEER_FAILURES_BEFORE_REFUSAL {
            assert_eq!(any.check(ip(9), now), Ok(()));
            any.failed(ip(9), now);
            any.failed(ip(1), now);
        }
        assert_eq!(any.check(ip(9), now), Err(Refusal::RepeatedFailures));
        assert_eq!(
            any.check(ip(1), now),
            Ok(()),
            "a member always gets through"
        );
        let later = now + PEER_FAILURE_REFUSAL;
        assert_eq!(any.check(ip(9), later), Ok(()), "the refusal expires");
        any.succeeded(ip(9));
        any.failed(ip(9), later);
        assert_eq!(
            any.check(ip(9), later),
            Ok(()),
            "a success resets the count"
        );
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let now = Instant::now();
        let any = SourceFilter::new(PeerSources::Any);
        for n in 0..(PEER_FAILURE_SOURCES_MAX as u32 + 10) {
            any.failed(IpAddr::from(n.to_be_bytes()), now);
        }
        assert_eq!(any.state().failures.len(), PEER_FAILURE_SOURCES_MAX);
    }
}
