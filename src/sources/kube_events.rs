//! Kubernetes Event source: core/v1 Events become candidates for the pager.
//!
//! - Old news never pages: an Event last seen longer than `--max-event-age` before it arrives is
//!   dropped, so a restart or a watch relist (which replays every Event) does not page history.
//!   Fresh Events replayed by a relist reach the pager, which finds their groups' AlertCalls.
//! - An Event seen again unchanged (same count and time, as a relist delivers it) is dropped.
//! - Events no route could match by type, reason and kind cost a few comparisons: no lookups.
//! - Labels come from [`LabelCache`]; lookups run concurrently but results keep watch order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Event;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::task::JoinSet;

use super::labels::LabelCache;
use crate::api::EventType;
use crate::pipeline::pager::{Pager, Signal};
use crate::pipeline::routes::{RouteSnapshot, Routes};
use crate::pipeline::Shared;
use crate::routing::{Candidate, EventCandidate};

/// Label lookups in flight at once.
const CONCURRENT_LOOKUPS: usize = 64;

/// What routes need to know of an Event before paying for label lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interest {
    pub object_labels: bool,
    pub namespace_labels: bool,
}

/// Whether any active route could match the event by type, reason and kind, and which labels
/// it would need. `None`: no route cares.
pub fn interest(snapshot: &RouteSnapshot, event: &EventCandidate) -> Option<Interest> {
    let listed = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
    let mut found: Option<Interest> = None;
    for route in snapshot.index.routes() {
        let Some(spec) = route.route.spec.kubernetes_events.as_ref() else {
            continue;
        };
        let type_ok = spec.types.is_empty()
            || spec.types.iter().any(|t| {
                matches!(
                    (t, event.type_.as_str()),
                    (EventType::Warning, "Warning") | (EventType::Normal, "Normal")
                )
            });
        if !route.is_active()
            || !type_ok
            || !listed(&spec.reasons, &event.reason)
            || !listed(&spec.involved_kinds, &event.involved.kind)
        {
            continue;
        }
        let interest = found.get_or_insert_with(Interest::default);
        interest.object_labels |= spec.object_selector.is_some();
        interest.namespace_labels |= spec.namespace_selector.is_some();
    }
    found
}

/// Kinds whose labels routes select on, to watch before their first Event.
pub fn selected_kinds(snapshot: &RouteSnapshot) -> Vec<String> {
    let mut kinds: Vec<String> = snapshot
        .index
        .routes()
        .iter()
        .filter(|route| route.is_active())
        .filter_map(|route| route.route.spec.kubernetes_events.as_ref())
        .filter(|spec| spec.object_selector.is_some())
        .flat_map(|spec| spec.involved_kinds.iter().cloned())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// What was last processed of each Event, to drop unchanged re-deliveries.
#[derive(Debug, Default)]
pub struct Seen {
    events: HashMap<EventId, (i64, Option<Timestamp>)>,
    inserts: usize,
}

/// An Event's uid as [`Seen`] keeps it: a number when it is a UUID as the API server writes them
/// (lower-case hex), else its text. Every Event of the last `--max-event-age` is kept, a storm's
/// included (20,000 in `benches/scale.rs`); a 36-character string costs its allocation on top.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum EventId {
    Uuid(u128),
    Other(Box<str>),
}

impl EventId {
    fn of(uid: &str) -> Self {
        match uuid(uid) {
            Some(number) => EventId::Uuid(number),
            None => EventId::Other(uid.into()),
        }
    }
}

/// `8-4-4-4-12` lower-case hex digits as a number. Upper case is refused: two uids that differ
/// only in case are two Events.
fn uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut number = 0u128;
    for (at, byte) in bytes.iter().enumerate() {
        let digit = match (at, byte) {
            (8 | 13 | 18 | 23, b'-') => continue,
            (8 | 13 | 18 | 23, _) => return None,
            (_, b'0'..=b'9') => byte - b'0',
            (_, b'a'..=b'f') => byte - b'a' + 10,
            _ => return None,
        };
        number = number << 4 | u128::from(digit);
    }
    Some(number)
}

/// The verdict on one delivered Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Same count and time as before.
    Unchanged,
    /// Last seen longer than the maximum age before now.
    TooOld,
    /// New occurrences to consider.
    Fresh { occurrences: i64 },
}

impl Seen {
    /// Judges an Event delivered at `now`. Pure apart from the bookkeeping.
    pub fn arrive(
        &mut self,
        uid: &str,
        candidate: &EventCandidate,
        now: Timestamp,
        max_age: SignedDuration,
    ) -> Arrival {
        let current = (candidate.count, candidate.last_seen);
        let previous = self.events.insert(EventId::of(uid), current);
        self.inserts += 1;
        if self.inserts >= 10_000 {
            self.forget_before(now, max_age);
        }
        if previous == Some(current) {
            return Arrival::Unchanged;
        }
        let last_seen = candidate.last_seen.unwrap_or(now);
        if now.duration_since(last_seen) > max_age {
            return Arrival::TooOld;
        }
        let occurrences = match previous {
            Some((count, _)) => (candidate.count - count).max(0),
            None => candidate.count,
        };
        Arrival::Fresh { occurrences }
    }

    /// Events last seen before the max age are judged TooOld anyway; their entries can go.
    fn forget_before(&mut self, now: Timestamp, max_age: SignedDuration) {
        self.inserts = 0;
        self.events
            .retain(|_, (_, last_seen)| last_seen.is_none_or(|t| now.duration_since(t) <= max_age));
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

enum Output {
    Signal(Box<Signal>),
    Synced,
    Nothing,
}

/// Readiness component: the Event watch has listed what exists.
pub const EVENTS: &str = "events";

/// Watches Events and hands fresh, interesting ones to the pager until the task is dropped.
pub async fn run(shared: Shared, max_event_age: Duration, routes: Routes, pager: Pager) {
    let cache = Arc::new(LabelCache::new(
        shared.client.clone(),
        shared.namespace.clone(),
    ));
    let mut helpers = JoinSet::new();
    {
        let cache = cache.clone();
        let mut routes = routes.clone();
        helpers.spawn(async move {
            loop {
                let kinds = selected_kinds(&routes.borrow_and_update());
                cache.prepare(&kinds).await;
                if routes.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    pager.until_ready().await;

    let api: Api<Event> = match &shared.namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let max_age = SignedDuration::try_from(max_event_age).unwrap_or_default();
    let mut seen = Seen::default();
    let mut outputs = watcher(api, watcher::Config::default())
        .default_backoff()
        .map(move |item| {
            let (event, replay) = match item {
                Ok(watcher::Event::Apply(event)) => (event, false),
                Ok(watcher::Event::InitApply(event)) => (event, true),
                Ok(watcher::Event::InitDone) => return async { Output::Synced }.boxed(),
                Ok(_) => return async { Output::Nothing }.boxed(),
                Err(error) => {
                    tracing::warn!(%error, "watching Events");
                    return async { Output::Nothing }.boxed();
                }
            };
            let now = Timestamp::now();
            let plain = EventCandidate::from_event(&event, BTreeMap::new(), BTreeMap::new());
            let uid = event
                .uid()
                .unwrap_or_else(|| format!("{}/{}", plain.namespace, event.name_any()));
            let occurrences = match seen.arrive(&uid, &plain, now, max_age) {
                Arrival::Fresh { occurrences } => occurrences,
                Arrival::TooOld => {
                    tracing::debug!(event = %uid, "older than the maximum event age; not paging");
                    return async { Output::Nothing }.boxed();
                }
                Arrival::Unchanged => return async { Output::Nothing }.boxed(),
            };
            let Some(interest) = interest(&routes.borrow(), &plain) else {
                return async { Output::Nothing }.boxed();
            };
            let cache = cache.clone();
            async move {
                let namespace_labels = if interest.namespace_labels {
                    cache.namespace_labels(&plain.namespace, !replay).await
                } else {
                    BTreeMap::new()
                };
                let object_labels = if interest.object_labels {
                    let involved = &event.involved_object;
                    cache
                        .object_labels(
                            involved.api_version.as_deref().unwrap_or("v1"),
                            &plain.involved.kind,
                            &plain.involved.namespace,
                            &plain.involved.name,
                            !replay,
                        )
                        .await
                } else {
                    BTreeMap::new()
                };
                let candidate = EventCandidate::from_event(&event, object_labels, namespace_labels);
                Output::Signal(Box::new(Signal {
                    candidate: Candidate::Event(candidate),
                    occurrences,
                    received: now,
                    replay,
                    reply: None,
                }))
            }
            .boxed()
        })
        .buffered(CONCURRENT_LOOKUPS)
        .boxed();
    while let Some(output) = outputs.next().await {
        match output {
            Output::Signal(signal) => {
                if !pager.send(*signal).await {
                    return;
                }
            }
            Output::Synced => shared.readiness.set_ready(EVENTS),
            Output::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AlertRoute;
    use crate::fixtures;
    use crate::routing::RouteIndex;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn event(count: i64, last_seen: i64) -> EventCandidate {
        fixtures::backoff_event(count, fixtures::at(last_seen))
    }

    #[test]
    fn arrivals_drop_old_and_unchanged_events_and_count_bumps() {
        let max_age = SignedDuration::from_secs(300);
        let mut seen = Seen::default();
        let now = fixtures::at(1_000);
        assert_eq!(
            seen.arrive("a", &event(1, 990), now, max_age),
            Arrival::Fresh { occurrences: 1 }
        );
        // A relist delivers it again unchanged.
        assert_eq!(
            seen.arrive("a", &event(1, 990), now, max_age),
            Arrival::Unchanged
        );
        assert_eq!(
            seen.arrive("a", &event(4, 995), now, max_age),
            Arrival::Fresh { occurrences: 3 }
        );
        // Seen first after a restart, count included.
        assert_eq!(
            seen.arrive("b", &event(7, 999), now, max_age),
            Arrival::Fresh { occurrences: 7 }
        );
        assert_eq!(
            seen.arrive("old", &event(1, 600), now, max_age),
            Arrival::TooOld
        );
        // A count bump makes an old Event fresh again.
        assert_eq!(
            seen.arrive("old", &event(2, 999), now, max_age),
            Arrival::Fresh { occurrences: 1 }
        );
        seen.forget_before(fixtures::at(2_000), max_age);
        assert!(seen.is_empty());
    }

    #[test]
    fn uids_are_kept_as_numbers_when_they_are_uuids() {
        let uid = "5f0c2b6e-3a1d-4c8e-9b7a-0d2e4f6a8c1e";
        assert_eq!(
            EventId::of(uid),
            EventId::Uuid(0x5f0c2b6e_3a1d_4c8e_9b7a_0d2e4f6a8c1e)
        );
        assert_eq!(
            EventId::of("00000000-0000-0000-0000-000000000001"),
            EventId::Uuid(1)
        );
        for other in [
            "5F0C2B6E-3A1D-4C8E-9B7A-0D2E4F6A8C1E",
            "5f0c2b6e+3a1d-4c8e-9b7a-0d2e4f6a8c1e",
            "5f0c2b6e-3a1d-4c8e-9b7a-0d2e4f6a8c1",
            "5f0c2b6e-3a1d-4c8e-9b7a-0d2e4f6a8c1g",
            "prod/api.17a3",
            "",
        ] {
            assert_eq!(EventId::of(other), EventId::Other(other.into()));
        }
        // Each uid is its own Event, whichever way it is kept.
        let max_age = SignedDuration::from_secs(300);
        let now = fixtures::at(1_000);
        let mut seen = Seen::default();
        for uid in [
            uid,
            "5f0c2b6e-3a1d-4c8e-9b7a-0d2e4f6a8c1f",
            &uid.to_uppercase(),
        ] {
            assert_eq!(
                seen.arrive(uid, &event(1, 990), now, max_age),
                Arrival::Fresh { occurrences: 1 }
            );
        }
        assert_eq!(
            seen.arrive(uid, &event(1, 990), now, max_age),
            Arrival::Unchanged
        );
        assert_eq!(seen.len(), 3);
    }

    fn snapshot(spec: crate::api::AlertRouteSpec) -> RouteSnapshot {
        let mut route = AlertRoute::new("r", spec);
        route.metadata.namespace = Some("prod".into());
        RouteSnapshot {
            index: RouteIndex::new([route]),
            ..Default::default()
        }
    }

    #[test]
    fn interest_asks_only_for_labels_some_route_selects_on() {
        let plain = fixtures::route_spec();
        assert_eq!(
            interest(&snapshot(plain.clone()), &event(1, 0)),
            Some(Interest::default())
        );
        let mut other = event(1, 0);
        other.reason = "Pulled".into();
        assert_eq!(interest(&snapshot(plain.clone()), &other), None);
        let mut selective = plain;
        if let Some(events) = selective.kubernetes_events.as_mut() {
            events.object_selector = Some(LabelSelector::default());
            events.namespace_selector = Some(LabelSelector::default());
        }
        assert_eq!(
            interest(&snapshot(selective.clone()), &event(1, 0)),
            Some(Interest {
                object_labels: true,
                namespace_labels: true
            })
        );
        assert_eq!(selected_kinds(&snapshot(selective.clone())), vec!["Pod"]);
        selective.suspend = true;
        assert_eq!(interest(&snapshot(selective), &event(1, 0)), None);
    }
}
