//! Group keys, deterministic AlertCall names and the group wait / repeat window decision.
//!
//! The AlertCall name is derived from route, group key and a fixed `floor(epoch / repeat)`
//! bucket, so replicas and restarts that decide to page the same group in the same bucket create
//! the same object (the second create is a harmless AlreadyExists). Whether to page at all is the
//! sliding decision of [`decide`], from the group's last page time.

use std::collections::HashMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::candidate::{Candidate, RouteKey};
use crate::api::GroupingSpec;

/// A group's identity within a route: the `groupBy` values joined by `/`, for example
/// `prod/Pod/api-7f9/BackOff`. `%` and `/` inside values are percent-encoded so distinct groups
/// never share a key; empty values stay empty (a cluster-scoped Node: `/Node/node-1/NodeNotReady`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupKey(String);

impl GroupKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of a candidate under a route's `groupBy`. An empty `groupBy` puts every signal of
    /// the route in one group (key ``), as in Alertmanager; `...` (alone, as in Alertmanager)
    /// groups by everything: every alert label as `name=value`, or every event field.
    pub fn of(group_by: &[String], candidate: &Candidate) -> Self {
        if group_by.iter().any(|field| field.trim() == "...") {
            let parts: Vec<String> = match candidate {
                Candidate::Alert(alert) => alert
                    .labels
                    .iter()
                    .map(|(name, value)| {
                        format!("{}={}", escape(name).replace('=', "%3D"), escape(value))
                    })
                    .collect(),
                Candidate::Event(_) => EVENT_FIELDS
                    .iter()
                    .map(|field| escape(&candidate.group_field(field)))
                    .collect(),
            };
            return GroupKey(parts.join("/"));
        }
        let parts: Vec<String> = group_by
            .iter()
            .map(|field| escape(&candidate.group_field(field.trim())))
            .collect();
        GroupKey(parts.join("/"))
    }
}

const EVENT_FIELDS: [&str; 5] = ["namespace", "kind", "name", "reason", "type"];

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn escape(value: &str) -> String {
    value.replace('%', "%25").replace('/', "%2F")
}

fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        // NB: length-prefixed so ("a/b", "c") and ("a", "b/c") never hash alike.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A stable hash of (route, group key), 16 hex digits: the `alertcall.dev/group-hash` label that
/// finds every page a group made, whatever its window.
pub fn group_hash(route: &RouteKey, key: &GroupKey) -> String {
    digest(&[&route.namespace, &route.name, key.as_str()])[..16].to_string()
}

/// The repeat window a page belongs to, the part of the AlertCall name that changes over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `floor(epoch_seconds / repeatIntervalSeconds)` at the page time.
    pub bucket: i64,
    /// When the group was resolved before this page, in epoch seconds: a group that resolves and
    /// fires again within one bucket pages again, so it needs a name of its own.
    pub reopened_at: Option<i64>,
}

impl Window {
    pub fn at(
        now: Timestamp,
        repeat_interval_seconds: u32,
        reopened_at: Option<Timestamp>,
    ) -> Self {
        let width = i64::from(repeat_interval_seconds.max(1));
        Self {
            bucket: now.as_second().div_euclid(width),
            reopened_at: reopened_at.map(|t| t.as_second()),
        }
    }

    fn seed(&self) -> String {
        match self.reopened_at {
            None => format!("{}", self.bucket),
            Some(at) => format!("{}@{at}", self.bucket),
        }
    }
}

const HASH_LEN: usize = 10;
const NAME_MAX: usize = 63;

/// The AlertCall name for a page: `<route>-<10 hex digits>`, a DNS-1123 subdomain of at most 63
/// characters. The route name is shortened (at a character that may end a name) to fit.
pub fn alert_call_name(route: &RouteKey, key: &GroupKey, window: &Window) -> String {
    let hash = digest(&[&route.namespace, &route.name, key.as_str(), &window.seed()]);
    let budget = NAME_MAX - 1 - HASH_LEN;
    let lowered = route.name.to_ascii_lowercase();
    let mut prefix: String = lowered
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(budget)
        .collect();
    // A DNS label ends alphanumeric; `<prefix>-` must not produce `.-` or `--`-only prefixes.
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    while prefix.starts_with(['-', '.']) {
        prefix.remove(0);
    }
    if prefix.is_empty() {
        prefix.push_str("alertcall");
    }
    format!("{prefix}-{}", &hash[..HASH_LEN])
}

/// What is known about a group, from existing AlertCalls and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupState {
    /// First signal of the group not yet paged for (group wait counts from here).
    pub first_seen: Option<Timestamp>,
    /// When the group last paged (the newest AlertCall of the group).
    pub last_page: Option<Timestamp>,
    /// The latest time the group was resolved (an Alertmanager `resolved` alert).
    pub resolved_at: Option<Timestamp>,
}

impl GroupState {
    /// Resolved after its last page: the repeat window is closed.
    fn reopened(&self) -> Option<Timestamp> {
        match (self.last_page, self.resolved_at) {
            (Some(page), Some(resolved)) if resolved >= page => Some(resolved),
            _ => None,
        }
    }
}

/// What to do with a firing signal of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupDecision {
    /// Create the AlertCall with this name now. `not_before` is set while a new group's
    /// `groupWaitSeconds` runs: the page exists at once (so the wait survives restarts and later
    /// signals only count), and is not dialed before then.
    Page {
        name: String,
        window: Window,
        not_before: Option<Timestamp>,
    },
    /// The group paged within the repeat window; counts as suppressed. It may page again at `until`.
    Suppress { until: Timestamp },
}

/// The sliding-window decision for a firing signal of `key` on `route` at `now`.
///
/// A group that paged less than `repeatIntervalSeconds` ago is suppressed, unless it was resolved
/// since (a resolve closes the window). A new group (never paged, or resolved since) waits
/// `groupWaitSeconds` from its first signal; a repeat page does not wait again, as in Alertmanager.
pub fn decide(
    route: &RouteKey,
    key: &GroupKey,
    grouping: &GroupingSpec,
    state: &GroupState,
    now: Timestamp,
) -> GroupDecision {
    let repeat = SignedDuration::from_secs(i64::from(grouping.repeat_interval_seconds.max(1)));
    let reopened = state.reopened();
    if let (Some(last), None) = (state.last_page, reopened) {
        let until = last.saturating_add(repeat).unwrap_or(last);
        if now < until {
            return GroupDecision::Suppress { until };
        }
    }
    let new_group = state.last_page.is_none() || reopened.is_some();
    let mut not_before = None;
    if new_group && grouping.group_wait_seconds > 0 {
        let mut start = state.first_seen.unwrap_or(now);
        if let Some(resolved) = reopened {
            start = start.max(resolved);
        }
        let wait = SignedDuration::from_secs(i64::from(grouping.group_wait_seconds));
        let until = ceil_second(start.saturating_add(wait).unwrap_or(start));
        not_before = (now < until).then_some(until);
    }
    let window = Window::at(now, grouping.repeat_interval_seconds, reopened);
    GroupDecision::Page {
        name: alert_call_name(route, key, &window),
        window,
        not_before,
    }
}

/// NB: `spec.notBefore` is a metav1.Time, stored in whole seconds; rounded up, the stored time
/// never ends a wait early.
fn ceil_second(at: Timestamp) -> Timestamp {
    if at.subsec_nanosecond() == 0 {
        return at;
    }
    Timestamp::from_second(at.as_second().saturating_add(1)).unwrap_or(at)
}

/// In-memory group states of one replica: what it saw since it started. Pure bookkeeping; the
/// caller supplies the times. Last pages lost on restart are recovered from AlertCalls.
#[derive(Debug, Clone, Default)]
pub struct GroupTracker {
    groups: HashMap<(RouteKey, GroupKey), GroupState>,
}

impl GroupTracker {
    pub fn state(&self, route: &RouteKey, key: &GroupKey) -> GroupState {
        self.groups
            .get(&(route.clone(), key.clone()))
            .copied()
            .unwrap_or_default()
    }

    fn entry(&mut self, route: &RouteKey, key: &GroupKey) -> &mut GroupState {
        self.groups.entry((route.clone(), key.clone())).or_default()
    }

    /// A firing signal of the group was seen at `at`.
    pub fn firing(&mut self, route: &RouteKey, key: &GroupKey, at: Timestamp) {
        let state = self.entry(route, key);
        if state.first_seen.is_none() {
            state.first_seen = Some(at);
        }
    }

    /// The group was resolved at `at`: the next firing starts a new group.
    pub fn resolved(&mut self, route: &RouteKey, key: &GroupKey, at: Timestamp) {
        let state = self.entry(route, key);
        state.resolved_at = Some(state.resolved_at.map_or(at, |t| t.max(at)));
        state.first_seen = None;
    }

    /// The group paged at `at` (or an AlertCall of it was found created then).
    pub fn paged(&mut self, route: &RouteKey, key: &GroupKey, at: Timestamp) {
        let state = self.entry(route, key);
        state.last_page = Some(state.last_page.map_or(at, |t| t.max(at)));
        state.first_seen = None;
    }

    /// Drops groups with no activity since `cutoff` (call with `now - repeat interval` or more).
    pub fn forget_before(&mut self, cutoff: Timestamp) {
        self.groups.retain(|_, state| {
            [state.first_seen, state.last_page, state.resolved_at]
                .into_iter()
                .flatten()
                .any(|t| t >= cutoff)
        });
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::candidate::{AlertCandidate, EventCandidate, InvolvedObject};
    use std::collections::BTreeMap;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap_or_default()
    }

    fn event(namespace: &str, kind: &str, name: &str, reason: &str) -> Candidate {
        Candidate::Event(EventCandidate {
            type_: "Warning".into(),
            reason: reason.into(),
            involved: InvolvedObject {
                kind: kind.into(),
                name: name.into(),
                namespace: namespace.into(),
            },
            namespace: if namespace.is_empty() {
                "default".into()
            } else {
                namespace.into()
            },
            count: 1,
            ..Default::default()
        })
    }

    use crate::routing::selector::is_dns_subdomain;

    fn by(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn group_keys_read_well() {
        let default_by = GroupingSpec::default().group_by;
        let table: Vec<(Vec<String>, Candidate, &str)> = vec![
            (
                default_by.clone(),
                event("prod", "Pod", "api-7f9", "BackOff"),
                "prod/Pod/api-7f9/BackOff",
            ),
            (
                default_by.clone(),
                event("", "Node", "node-1", "NodeNotReady"),
                "/Node/node-1/NodeNotReady",
            ),
            (
                by(&["reason", "type"]),
                event("prod", "Pod", "x", "BackOff"),
                "BackOff/Warning",
            ),
            (
                by(&["namespace", "unknown"]),
                event("prod", "Pod", "x", "BackOff"),
                "prod/",
            ),
            (by(&[]), event("prod", "Pod", "x", "BackOff"), ""),
        ];
        for (group_by, candidate, want) in table {
            assert_eq!(GroupKey::of(&group_by, &candidate).as_str(), want);
        }
    }

    #[test]
    fn alert_group_keys_use_labels_then_derived_fields() {
        let alert = Candidate::Alert(AlertCandidate {
            labels: BTreeMap::from([
                ("alertname".to_string(), "KubePodCrashLooping".to_string()),
                ("namespace".to_string(), "prod".to_string()),
                ("pod".to_string(), "api/7f9%".to_string()),
                ("cluster".to_string(), "eu-1".to_string()),
            ]),
            ..Default::default()
        });
        let default_by = GroupingSpec::default().group_by;
        assert_eq!(
            GroupKey::of(&default_by, &alert).as_str(),
            "prod/Pod/api%2F7f9%25/KubePodCrashLooping"
        );
        assert_eq!(
            GroupKey::of(&by(&["cluster", "alertname"]), &alert).as_str(),
            "eu-1/KubePodCrashLooping"
        );
        assert_eq!(
            GroupKey::of(&by(&["..."]), &alert).as_str(),
            "alertname=KubePodCrashLooping/cluster=eu-1/namespace=prod/pod=api%2F7f9%25"
        );
        assert_eq!(
            GroupKey::of(&by(&["..."]), &event("prod", "Pod", "x", "BackOff")).as_str(),
            "prod/Pod/x/BackOff/Warning"
        );
    }

    #[test]
    fn slashes_in_values_do_not_merge_groups() {
        let a = event("prod", "Pod", "a/b", "X");
        let b = event("prod/Pod", "a", "b", "X");
        let group_by = by(&["namespace", "kind", "name"]);
        assert_ne!(GroupKey::of(&group_by, &a), GroupKey::of(&group_by, &b));
    }

    #[test]
    fn names_are_stable_valid_and_distinct() {
        let route = RouteKey::new("prod", "critical-pods");
        let key = GroupKey("prod/Pod/api-7f9/BackOff".into());
        let window = Window::at(ts(7_200), 3600, None);
        let name = alert_call_name(&route, &key, &window);
        // Pinned: the name must not change across releases, or a restart would page twice.
        assert_eq!(
            name,
            alert_call_name(&route, &key, &Window::at(ts(10_799), 3600, None))
        );
        assert!(name.starts_with("critical-pods-") && name.len() == "critical-pods-".len() + 10);
        assert!(is_dns_subdomain(&name), "{name}");
        let others = [
            alert_call_name(&route, &key, &Window::at(ts(10_800), 3600, None)),
            alert_call_name(&route, &key, &Window::at(ts(7_200), 3600, Some(ts(7_300)))),
            alert_call_name(&route, &GroupKey("prod/Pod/api-7f9/OOM".into()), &window),
            alert_call_name(&RouteKey::new("dev", "critical-pods"), &key, &window),
        ];
        for other in others {
            assert_ne!(name, other);
        }
    }

    #[test]
    fn name_hash_is_pinned() {
        let name = alert_call_name(
            &RouteKey::new("prod", "critical-pods"),
            &GroupKey("prod/Pod/api-7f9/BackOff".into()),
            &Window {
                bucket: 2,
                reopened_at: None,
            },
        );
        assert_eq!(name, PINNED_NAME);
    }

    const PINNED_NAME: &str = "critical-pods-93a74bc65b";

    #[test]
    fn long_and_odd_route_names_still_give_valid_names() {
        let key = GroupKey("k".into());
        let window = Window::at(ts(0), 3600, None);
        let long = "a".repeat(51) + "-" + &"b".repeat(100);
        let dotted = "a".repeat(51) + ".bbb";
        for route_name in [
            long.as_str(),
            dotted.as_str(),
            "x",
            "-",
            "a.b.c",
            &"z".repeat(253),
        ] {
            let name = alert_call_name(&RouteKey::new("ns", route_name), &key, &window);
            assert!(name.len() <= 63, "{name}");
            assert!(is_dns_subdomain(&name), "{route_name} -> {name}");
        }
        assert!(alert_call_name(&RouteKey::new("ns", "-"), &key, &window).starts_with("alertcall-"));
    }

    #[test]
    fn group_hash_ignores_the_window() {
        let route = RouteKey::new("prod", "r");
        let key = GroupKey("g".into());
        assert_eq!(group_hash(&route, &key).len(), 16);
        assert_ne!(
            group_hash(&route, &key),
            group_hash(&route, &GroupKey("h".into()))
        );
    }

    fn grouping(wait: u32, repeat: u32) -> GroupingSpec {
        GroupingSpec {
            group_by: GroupingSpec::default().group_by,
            group_wait_seconds: wait,
            repeat_interval_seconds: repeat,
        }
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Page,
        Suppress(i64),
        /// A page created now, not dialed before this time.
        Wait(i64),
    }

    #[test]
    fn window_decisions() {
        let state = |first: Option<i64>, last: Option<i64>, resolved: Option<i64>| GroupState {
            first_seen: first.map(ts),
            last_page: last.map(ts),
            resolved_at: resolved.map(ts),
        };
        let table: Vec<(&str, GroupingSpec, GroupState, i64, Want)> = vec![
            (
                "new group pages at once",
                grouping(0, 3600),
                state(None, None, None),
                1000,
                Want::Page,
            ),
            (
                "paged 10 min ago",
                grouping(0, 3600),
                state(None, Some(400), None),
                1000,
                Want::Suppress(4000),
            ),
            (
                "window just over",
                grouping(0, 3600),
                state(None, Some(400), None),
                4000,
                Want::Page,
            ),
            (
                "one second before",
                grouping(0, 3600),
                state(None, Some(400), None),
                3999,
                Want::Suppress(4000),
            ),
            (
                "resolved since the page",
                grouping(0, 3600),
                state(None, Some(400), Some(500)),
                1000,
                Want::Page,
            ),
            (
                "resolved before the page",
                grouping(0, 3600),
                state(None, Some(400), Some(300)),
                1000,
                Want::Suppress(4000),
            ),
            (
                "group wait from first signal",
                grouping(30, 3600),
                state(Some(990), None, None),
                1000,
                Want::Wait(1020),
            ),
            (
                "group wait over",
                grouping(30, 3600),
                state(Some(990), None, None),
                1020,
                Want::Page,
            ),
            (
                "group wait with no first signal",
                grouping(30, 3600),
                state(None, None, None),
                1000,
                Want::Wait(1030),
            ),
            (
                "repeat page does not wait",
                grouping(30, 3600),
                state(Some(4000), Some(400), None),
                4001,
                Want::Page,
            ),
            (
                "reopened group waits from the resolve",
                grouping(30, 3600),
                state(Some(450), Some(400), Some(500)),
                510,
                Want::Wait(530),
            ),
        ];
        let route = RouteKey::new("prod", "r");
        let key = GroupKey("g".into());
        for (name, grouping, state, now, want) in table {
            let got = match decide(&route, &key, &grouping, &state, ts(now)) {
                GroupDecision::Page {
                    not_before: None, ..
                } => Want::Page,
                GroupDecision::Page {
                    not_before: Some(until),
                    ..
                } => Want::Wait(until.as_second()),
                GroupDecision::Suppress { until } => Want::Suppress(until.as_second()),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn the_group_wait_ends_on_a_whole_second_never_early() {
        let route = RouteKey::new("prod", "r");
        let key = GroupKey("g".into());
        let now = ts(1000) + SignedDuration::from_millis(250);
        let state = GroupState {
            first_seen: Some(now),
            ..GroupState::default()
        };
        match decide(&route, &key, &grouping(30, 3600), &state, now) {
            GroupDecision::Page {
                not_before: Some(at),
                ..
            } => assert_eq!(at, ts(1031)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_page_after_resolve_in_the_same_bucket_gets_a_new_name() {
        let route = RouteKey::new("prod", "r");
        let key = GroupKey("g".into());
        let spec = grouping(0, 3600);
        let first = decide(&route, &key, &spec, &GroupState::default(), ts(3700));
        let again = decide(
            &route,
            &key,
            &spec,
            &GroupState {
                first_seen: None,
                last_page: Some(ts(3700)),
                resolved_at: Some(ts(3800)),
            },
            ts(3900),
        );
        match (first, again) {
            (GroupDecision::Page { name: a, .. }, GroupDecision::Page { name: b, .. }) => {
                assert_ne!(a, b)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replicas_agree_on_the_name_within_a_bucket() {
        let route = RouteKey::new("prod", "r");
        let key = GroupKey("g".into());
        let spec = grouping(0, 3600);
        let names: Vec<GroupDecision> = [3600, 4000, 7199]
            .into_iter()
            .map(|now| decide(&route, &key, &spec, &GroupState::default(), ts(now)))
            .collect();
        assert_eq!(names[0], names[1]);
        assert_eq!(names[1], names[2]);
    }

    #[test]
    fn tracker_follows_a_group_through_page_resolve_and_refire() {
        let route = RouteKey::new("prod", "r");
        let key = GroupKey("g".into());
        let spec = grouping(0, 3600);
        let mut tracker = GroupTracker::default();
        tracker.firing(&route, &key, ts(100));
        assert!(matches!(
            decide(&route, &key, &spec, &tracker.state(&route, &key), ts(100)),
            GroupDecision::Page { .. }
        ));
        tracker.paged(&route, &key, ts(100));
        tracker.firing(&route, &key, ts(200));
        assert!(matches!(
            decide(&route, &key, &spec, &tracker.state(&route, &key), ts(200)),
            GroupDecision::Suppress { .. }
        ));
        tracker.resolved(&route, &key, ts(300));
        tracker.firing(&route, &key, ts(400));
        assert!(matches!(
            decide(&route, &key, &spec, &tracker.state(&route, &key), ts(400)),
            GroupDecision::Page { .. }
        ));
        tracker.forget_before(ts(401));
        assert!(tracker.is_empty());
    }
}
