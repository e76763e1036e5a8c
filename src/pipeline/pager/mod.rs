//! The pager: candidates from every source become AlertCalls, once per group and repeat window.
//!
//! One task owns all group state, so decisions are serialized: three Alertmanager replicas
//! posting the same alert at once, or a storm of copies of one Event, meet a group that is
//! already paged (the page is recorded before its create is even sent) and only update counters.
//!
//! ```text
//!  sources ─Signal─> pager ─ RouteIndex::matching ─ GroupKey ─ decide(last page + resolve from AlertCalls)
//!                      │         Page     ─> create AlertCall (AlreadyExists is harmless);
//!                      │                     with a group wait: spec.notBefore, phase Waiting
//!                      │         Suppress ─> batch spec.source.{lastSeen,count} of the page (leader)
//!                      │         resolved ─> spec.source.resolvedAt of the group's newest page
//!                      └─reply─> the webhook, once every decision on the signal is durable
//!  watch AlertCalls ───┘ (last page and last resolve of each group survive restarts)
//! ```
//!
//! - **Nothing waits in memory.** A group wait is the page's `spec.notBefore`: the AlertCall
//!   exists at once (so later signals only count, and a restart forgets nothing) and the
//!   AlertCall controller does not dial before then. A resolve during the wait is written on the
//!   page and the controller cancels it (`ResolvedDuringGroupWait`), as the wait always meant:
//!   a group that clears by itself within the wait rings nobody. Once a page rings, the
//!   controller ends it as `Resolved` if its route says `onResolved: Cancel` and nothing of the
//!   group fired after the resolve (`lastSeen`): the resolve's write carries any firing
//!   signal still waiting to be flushed.
//! - **Webhook signals carry a reply**, sent from `on_done` (the create itself still runs as a
//!   job, never inside the loop) once the page was created (201) or existed (409), the resolve
//!   was written, or the signal was suppressed; a failed create or write answers an error, so
//!   Alertmanager retries. A failed create is also retried here every few seconds.
//! - **Any replica pages for the alerts posted to it**: a webhook reaches one replica only, and
//!   page names are deterministic per group and window, so replicas deciding alike create one
//!   object (the second create is a 409). Only the leader dials (the AlertCall controller),
//!   writes counters and route status. Resolves are written by whichever replica received them.
//!   **Events page from the leader alone**: every replica sees every Event, and two pagers
//!   deciding the same group on either side of a window boundary would name two pages; a
//!   follower keeps its decisions and makes them again if it takes over. Alerts posted to two
//!   replicas at a window boundary can make two pages in the same way: rare, and a second call
//!   is the safe way to be wrong.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::routes::{RouteSnapshot, RouteStats, Routes};
use super::Shared;
use crate::api::AlertCall;
use crate::metrics::RouteLabels;
use crate::routing::build::LABEL_GROUP_HASH;
use crate::routing::{
    build_alert_call, decide, group_hash, Candidate, CompiledRoute, GroupDecision, GroupKey,
    GroupTracker, PageRequest, RouteKey,
};

/// How often counter updates of paged groups are written, at most.
mod heartbeat;
mod index;
mod writes;

use index::{record_of, GroupId};
pub use index::{PageIndex, PageRecord};

/// Readiness component: the AlertCall cache the pager deduplicates against is loaded.
pub const PAGES: &str = "alertcalls";

pub const COUNTER_INTERVAL: Duration = Duration::from_secs(2);
/// A failed create is tried again after this long (the candidate is kept meanwhile).
const CREATE_RETRY: SignedDuration = SignedDuration::from_secs(5);
/// Queue between the sources and the pager; a full queue makes the webhook answer 503.
const QUEUE: usize = 10_000;
/// Group state older than the longest repeat interval (7 days) plus a margin is forgotten.
const FORGET_AFTER: SignedDuration = SignedDuration::from_hours(8 * 24);

/// A candidate signal, as a source hands it to the pager.
#[derive(Debug)]
pub struct Signal {
    pub candidate: Candidate,
    /// Occurrences this signal adds to its group's count (an Event count bump: the difference).
    pub occurrences: i64,
    pub received: Timestamp,
    /// From a watch's initial list: a previous process may have counted it already.
    pub replay: bool,
    /// Told once every matching route's decision on the signal is settled (the webhook answers
    /// from it). `None` for Events: nobody waits on them.
    pub reply: Option<oneshot::Sender<PageOutcome>>,
}

/// How the pager's decisions on one signal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOutcome {
    /// Durable: the page was created or existed already, the resolve was recorded, or the signal
    /// was suppressed, counted or matched nothing.
    Settled,
    /// A page could not be created or a resolve not recorded; the sender should retry.
    Failed(String),
}

/// A signal someone waits on, by the number of decisions still open.
#[derive(Debug)]
struct PendingReply {
    tx: oneshot::Sender<PageOutcome>,
    open: usize,
    failure: Option<String>,
}

type ReplyId = u64;

/// The pager is busy or not ready; the caller should answer 503 (Alertmanager retries).
#[derive(Debug, thiserror::Error)]
#[error("the pager cannot take signals now")]
pub struct PagerBusy;

/// The sending side of the pager, cloned into every source.
#[derive(Clone)]
pub struct Pager {
    tx: mpsc::Sender<Signal>,
    ready: watch::Receiver<bool>,
}

impl Pager {
    /// Waits for room in the queue; false when the pager stopped.
    pub async fn send(&self, signal: Signal) -> bool {
        self.tx.send(signal).await.is_ok()
    }

    pub fn try_send(&self, signal: Signal) -> Result<(), PagerBusy> {
        if !self.is_ready() {
            return Err(PagerBusy);
        }
        self.tx.try_send(signal).map_err(|_| PagerBusy)
    }

    /// Routes and existing AlertCalls are loaded: decisions are meaningful.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub async fn until_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// Counter updates of one page, summed until the next flush.
#[derive(Debug, Clone, Default, PartialEq)]
struct PendingCounter {
    last_seen: Option<Timestamp>,
    add: i64,
    counted: bool,
}

enum Done {
    Created {
        namespace: String,
        id: GroupId,
        group: (RouteKey, GroupKey),
        candidate: Box<Candidate>,
        name: String,
        result: Result<AlertCall, kube::Error>,
    },
    Patched {
        page: (String, String),
        pending: PendingCounter,
        result: Result<AlertCall, kube::Error>,
    },
    Resolved {
        page: (String, String),
        replies: Vec<ReplyId>,
        result: Result<AlertCall, kube::Error>,
    },
}

/// Starts the pager; its task runs until shutdown.
pub fn spawn(
    shared: Shared,
    max_event_age: Duration,
    routes: Routes,
    stats: RouteStats,
    tasks: &mut JoinSet<()>,
) -> Pager {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (ready_tx, ready) = watch::channel(false);
    let task = PagerTask::new(shared, max_event_age, routes, stats, false);
    tasks.spawn(task.run(rx, ready_tx));
    Pager { tx, ready }
}

struct PagerTask {
    shared: Shared,
    /// Signals older than this are not redecided on a takeover.
    max_event_age: Duration,
    routes: Routes,
    stats: RouteStats,
    tracker: GroupTracker,
    pages: PageIndex,
    /// Groups to decide again at a time (a create to retry).
    waiting: BTreeMap<Timestamp, Vec<(RouteKey, GroupKey)>>,
    /// The latest candidate of each waiting group.
    held: HashMap<(RouteKey, GroupKey), Candidate>,
    /// Pages whose create is in flight, by (namespace, name), with the signals waiting on it.
    in_flight: HashMap<(String, String), Vec<ReplyId>>,
    replies: HashMap<ReplyId, PendingReply>,
    next_reply: ReplyId,
    /// Pages decided while another replica leads: decided again if this one takes over.
    deferred: HashMap<(RouteKey, GroupKey), (Candidate, Timestamp)>,
    counters: HashMap<(String, String), PendingCounter>,
    jobs: JoinSet<Done>,
    was_leader: bool,
    /// Heartbeat routes: the newest beat, or when this process began watching the route.
    beats: HashMap<RouteKey, Timestamp>,
}

fn until(at: Timestamp) -> tokio::time::Instant {
    let wait = at.duration_since(Timestamp::now());
    let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + wait
}

impl PagerTask {
    fn new(
        shared: Shared,
        max_event_age: Duration,
        routes: Routes,
        stats: RouteStats,
        was_leader: bool,
    ) -> Self {
        Self {
            shared,
            max_event_age,
            routes,
            stats,
            tracker: GroupTracker::default(),
            pages: PageIndex::default(),
            waiting: BTreeMap::new(),
            held: HashMap::new(),
            in_flight: HashMap::new(),
            replies: HashMap::new(),
            next_reply: 0,
            deferred: HashMap::new(),
            counters: HashMap::new(),
            jobs: JoinSet::new(),
            was_leader,
            beats: HashMap::new(),
        }
    }
}

impl PagerTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Signal>, ready: watch::Sender<bool>) {
        let api: Api<DeserializeGuard<AlertCall>> = match &self.shared.namespace {
            Some(ns) => Api::namespaced(self.shared.client.clone(), ns),
            None => Api::all(self.shared.client.clone()),
        };
        let mut calls = watcher(api, watcher::Config::default().labels(LABEL_GROUP_HASH))
            .default_backoff()
            .boxed();
        let mut calls_synced = false;
        let mut tick = tokio::time::interval(COUNTER_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let is_ready = calls_synced && self.routes.borrow().synced;
            if is_ready && !*ready.borrow() {
                ready.send_replace(true);
                self.shared.readiness.set_ready(PAGES);
            }
            let wake = self.waiting.keys().next().copied();
            tokio::select! {
                biased;
                event = calls.next() => match event {
                    Some(Ok(event)) => calls_synced |= self.pages.on_event(event),
                    Some(Err(error)) => tracing::warn!(%error, "watching AlertCalls"),
                    None => return,
                },
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    if let Ok(done) = done {
                        self.on_done(done);
                    }
                }
                signal = rx.recv(), if is_ready => match signal {
                    Some(signal) => self.on_signal(signal),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.map(until).unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                    self.on_wake();
                }
                changed = self.routes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => self.on_tick(is_ready),
            }
        }
    }

    fn snapshot(&self) -> Arc<RouteSnapshot> {
        self.routes.borrow().clone()
    }

    fn on_signal(&mut self, mut signal: Signal) {
        let snapshot = self.snapshot();
        let now = Timestamp::now();
        let leader = self.shared.leader.is_leader();
        // NB: held open by this decision loop itself, so it cannot settle before every route
        // had its say; released at the end.
        let reply = signal.reply.take().map(|tx| self.open_reply(tx));
        for route in snapshot.index.matching(&signal.candidate) {
            if route.route.spec.heartbeat.is_some() {
                if leader {
                    self.count_matched(&route.key, now);
                }
                self.on_beat(route, &signal.candidate, now, leader);
                continue;
            }
            let key = GroupKey::of(&route.route.spec.grouping.group_by, &signal.candidate);
            if signal.candidate.is_resolved() {
                let at = match &signal.candidate {
                    Candidate::Alert(alert) => alert.ends_at.filter(|t| *t <= now),
                    Candidate::Event(_) => None,
                };
                let at = at.unwrap_or(now);
                self.tracker.resolved(&route.key, &key, at);
                self.held.remove(&(route.key.clone(), key.clone()));
                self.deferred.remove(&(route.key.clone(), key.clone()));
                self.record_resolve(&route.key, &key, at, reply);
                continue;
            }
            if signal.replay && self.covered(&route.key, &key, &signal.candidate) {
                // NB: relisted after a restart, and already part of the group's page: with a
                // repeat interval shorter than the maximum event age it would page again.
                continue;
            }
            if leader {
                self.count_matched(&route.key, now);
            }
            if route.is_muted_at(now) {
                // NB: not tracked as firing either: when the window opens, the next signal of
                // the group pages as if it were the first.
                if leader {
                    self.count_suppressed(&route.key);
                }
                continue;
            }
            self.tracker.firing(&route.key, &key, now);
            self.decide_group(
                route,
                &snapshot,
                key,
                &signal.candidate,
                now,
                Some(&signal),
                reply,
            );
        }
        self.release_reply(reply, None);
    }

    /// The group's newest page already saw this signal's last occurrence.
    fn covered(&self, route: &RouteKey, key: &GroupKey, candidate: &Candidate) -> bool {
        let id: GroupId = (route.namespace.clone(), group_hash(route, key));
        match (candidate.last_seen(), self.pages.latest(&id)) {
            (Some(seen), Some(page)) => page.last_seen.is_some_and(|covered| seen <= covered),
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_group(
        &mut self,
        route: &CompiledRoute,
        snapshot: &RouteSnapshot,
        key: GroupKey,
        candidate: &Candidate,
        now: Timestamp,
        signal: Option<&Signal>,
        reply: Option<ReplyId>,
    ) {
        let leader = self.shared.leader.is_leader();
        let id: GroupId = (route.key.namespace.clone(), group_hash(&route.key, &key));
        let mut state = self.tracker.state(&route.key, &key);
        // NB: the last page and the last resolve come from AlertCalls (and what this process
        // just decided), never from memory alone, so a restarted or newly elected replica
        // neither pages a group again nor forgets that a resolve reopened its window.
        state.last_page = self.pages.latest(&id).map(|page| page.created);
        state.resolved_at = state.resolved_at.max(self.pages.resolved_at(&id));
        let group = (route.key.clone(), key.clone());
        match decide(&route.key, &key, &route.route.spec.grouping, &state, now) {
            GroupDecision::Page {
                name, not_before, ..
            } => {
                self.held.remove(&group);
                // NB: every replica sees every Event, so only the leader pages for them (see the
                // module doc); an alert reached this replica alone, so it pages here.
                if !leader && !matches!(candidate, Candidate::Alert(_)) {
                    self.deferred.insert(group, (candidate.clone(), now));
                    return;
                }
                self.deferred.remove(&group);
                let not_before = not_before.max(snapshot.quiet_until(route, now));
                let page = NewPage {
                    name: &name,
                    id,
                    now,
                    not_before,
                    reply,
                };
                self.page(route, snapshot, key, candidate, page);
            }
            GroupDecision::Suppress { .. } => {
                if leader && signal.is_some() {
                    self.count_suppressed(&route.key);
                }
                if let Some(page) = self.pages.latest(&id).cloned() {
                    // NB: the page this signal joins may still be on its way: the signal is
                    // settled only once it is there.
                    let creating = (route.key.namespace.clone(), page.name.clone());
                    if let Some(waiting) = self.in_flight.get_mut(&creating) {
                        waiting.extend(reply);
                        self.hold_reply(reply);
                    }
                    if let Some(signal) = signal {
                        self.count(&route.key.namespace, page, signal);
                    }
                }
            }
        }
    }

    fn count_matched(&mut self, route: &RouteKey, now: Timestamp) {
        self.stats.update(route, |a| {
            a.matched += 1;
            a.last_matched_at = a.last_matched_at.max(Some(now));
        });
    }

    fn count_suppressed(&mut self, route: &RouteKey) {
        self.stats.update(route, |a| a.suppressed += 1);
        self.shared
            .metrics
            .suppressed
            .get_or_create(&route_labels(route))
            .inc();
    }

    fn page(
        &mut self,
        route: &CompiledRoute,
        snapshot: &RouteSnapshot,
        key: GroupKey,
        candidate: &Candidate,
        new: NewPage<'_>,
    ) {
        let NewPage {
            name,
            id,
            now,
            not_before,
            reply,
        } = new;
        let template = snapshot.template_of(route);
        let built = build_alert_call(
            PageRequest {
                route: &route.route,
                policy_template: &template,
                group_key: &key,
                name,
                now,
                not_before,
            },
            candidate,
        );
        if let Some(error) = &built.template_error {
            tracing::warn!(route = %route.key, %error, "template failed; paging with the fallback text");
            let failed = (template.clone(), error.to_string());
            self.stats
                .update(&route.key, |a| a.template_error = Some(failed));
        }
        // Recorded before the create is sent: the next signal of the group is suppressed even
        // while the create is in flight.
        self.pages.upsert(
            id.clone(),
            PageRecord {
                name: name.to_string(),
                created: now,
                last_seen: built.call.spec.source.last_seen.as_ref().map(|t| t.0),
                count: built.call.spec.source.count,
                resolved_at: None,
            },
        );
        self.in_flight
            .entry((route.key.namespace.clone(), name.to_string()))
            .or_default()
            .extend(reply);
        self.hold_reply(reply);
        let api: Api<AlertCall> = Api::namespaced(self.shared.client.clone(), &route.key.namespace);
        let call = built.call;
        let namespace = route.key.namespace.clone();
        let group = (route.key.clone(), key);
        let name = name.to_string();
        let candidate = Box::new(candidate.clone());
        self.jobs.spawn(async move {
            let result = api.create(&PostParams::default(), &call).await;
            Done::Created {
                namespace,
                id,
                group,
                candidate,
                name,
                result,
            }
        });
    }

    /// Adds a suppressed signal to the counters of the group's page.
    fn count(&mut self, namespace: &str, page: PageRecord, signal: &Signal) {
        let seen = signal.candidate.last_seen().unwrap_or(signal.received);
        // NB: a relisted event the page already covers was counted by whoever made the page.
        if signal.replay && page.last_seen.is_some_and(|last| seen <= last) {
            return;
        }
        let pending = self
            .counters
            .entry((namespace.to_string(), page.name))
            .or_default();
        pending.last_seen = pending.last_seen.max(Some(seen));
        if signal.candidate.count().is_some() {
            pending.add += signal.occurrences.max(0);
            pending.counted = true;
        }
    }

    fn on_wake(&mut self) {
        let now = Timestamp::now();
        let due: Vec<Timestamp> = self.waiting.range(..=now).map(|(t, _)| *t).collect();
        let snapshot = self.snapshot();
        for at in due {
            for group in self.waiting.remove(&at).unwrap_or_default() {
                let Some(candidate) = self.held.get(&group).cloned() else {
                    continue;
                };
                match snapshot.index.get(&group.0) {
                    Some(route) if route.matches(&candidate) => {
                        self.decide_group(route, &snapshot, group.1, &candidate, now, None, None);
                    }
                    _ => {
                        self.held.remove(&group);
                    }
                }
            }
        }
    }

    fn on_tick(&mut self, ready: bool) {
        let now = Timestamp::now();
        let leader = self.shared.leader.is_leader();
        if leader && !self.was_leader {
            self.take_over(now);
        }
        if leader && ready {
            self.check_heartbeats(now);
        }
        self.was_leader = leader;
        if let Ok(cutoff) = now.checked_sub(FORGET_AFTER) {
            self.tracker.forget_before(cutoff);
        }
        if leader {
            self.flush_counters();
        } else {
            self.counters.clear();
            // A takeover only redecides what is younger than the maximum event age.
            let max_age = SignedDuration::try_from(self.max_event_age).unwrap_or_default();
            self.deferred
                .retain(|_, (_, at)| now.duration_since(*at) <= max_age);
        }
    }

    /// Newly elected: pages the previous leader may not have made (AlertCalls tell).
    fn take_over(&mut self, now: Timestamp) {
        let max_age = SignedDuration::try_from(self.max_event_age).unwrap_or_default();
        let deferred = std::mem::take(&mut self.deferred);
        let snapshot = self.snapshot();
        for ((route_key, key), (candidate, at)) in deferred {
            if now.duration_since(at) > max_age {
                continue;
            }
            if let Some(route) = snapshot.index.get(&route_key) {
                if route.matches(&candidate) {
                    self.decide_group(route, &snapshot, key, &candidate, now, None, None);
                }
            }
        }
    }
}

/// What [`PagerTask::page`] creates, beyond the route and candidate.
struct NewPage<'a> {
    name: &'a str,
    id: GroupId,
    now: Timestamp,
    /// The group wait's end: the page is created now and dialed then.
    not_before: Option<Timestamp>,
    reply: Option<ReplyId>,
}

fn route_labels(key: &RouteKey) -> RouteLabels {
    RouteLabels {
        namespace: key.namespace.clone(),
        route: key.name.clone(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::api::AlertRouteSpec;
    use crate::pipeline::routes::RouteActivity;
    use crate::routing::{AlertCandidate, RouteIndex};

    /// A pager on a client that reaches nothing: decisions only (creates fail in the background).
    fn pager(spec: AlertRouteSpec) -> (PagerTask, RouteStats) {
        let mut route = crate::api::AlertRoute::new("r", spec);
        route.metadata.namespace = Some("prod".into());
        pager_on(route)
    }

    pub(super) fn pager_on(route: crate::api::AlertRoute) -> (PagerTask, RouteStats) {
        let client = crate::fixtures::unreachable_client();
        let shared = Shared {
            client,
            namespace: None,
            leader: crate::leader::Leadership::always(),
            readiness: crate::http::Readiness::default(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        };
        let snapshot = RouteSnapshot {
            index: RouteIndex::new([route]),
            synced: true,
            ..Default::default()
        };
        let (_publish, routes) = watch::channel(Arc::new(snapshot));
        let stats = RouteStats::default();
        let task = PagerTask::new(
            shared,
            Duration::from_secs(300),
            routes,
            stats.clone(),
            true,
        );
        (task, stats)
    }

    fn activity(stats: &RouteStats) -> RouteActivity {
        let mut found = RouteActivity::default();
        stats.update(&RouteKey::new("prod", "r"), |a| found = a.clone());
        found
    }

    pub(super) fn backoff(count: i64, last_seen: Timestamp, replay: bool) -> Signal {
        Signal {
            candidate: Candidate::Event(crate::fixtures::backoff_event(count, last_seen)),
            occurrences: 1,
            received: last_seen,
            replay,
            reply: None,
        }
    }

    #[tokio::test]
    async fn duplicates_page_once_and_later_signals_only_count() {
        let (mut pager, stats) = pager(crate::fixtures::route_spec());
        let now = Timestamp::now();
        for _ in 0..3 {
            pager.on_signal(backoff(1, now, false));
        }
        assert_eq!(pager.pages.page_count(), 1);
        let seen = activity(&stats);
        assert_eq!((seen.matched, seen.suppressed), (3, 2));
        let pending: Vec<&PendingCounter> = pager.counters.values().collect();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].add, pending[0].counted), (2, true));
    }

    #[tokio::test]
    async fn a_muted_route_counts_signals_as_suppressed_and_pages_nobody() {
        let mut spec = crate::fixtures::route_spec();
        spec.mute_time_intervals = vec![crate::api::TimeInterval::default()];
        let (mut pager, stats) = pager(spec);
        let now = Timestamp::now();
        pager.on_signal(backoff(1, now, false));
        pager.on_signal(backoff(2, now, false));
        assert_eq!(pager.pages.page_count(), 0);
        let seen = activity(&stats);
        assert_eq!((seen.matched, seen.suppressed), (2, 2));
    }

    #[tokio::test]
    async fn a_route_pages_only_inside_its_active_windows() {
        let outside = crate::api::TimeInterval {
            years: vec!["2000".into()],
            ..Default::default()
        };
        for (active, pages, suppressed) in [
            (vec![outside.clone()], 0, 1),
            (vec![outside, crate::api::TimeInterval::default()], 1, 0),
        ] {
            let mut spec = crate::fixtures::route_spec();
            spec.active_time_intervals = active;
            let (mut pager, stats) = pager(spec);
            pager.on_signal(backoff(1, Timestamp::now(), false));
            assert_eq!(pager.pages.page_count(), pages);
            assert_eq!(activity(&stats).suppressed, suppressed);
        }
    }

    #[tokio::test]
    async fn a_relisted_signal_the_page_covers_is_ignored_even_after_the_window() {
        let mut spec = crate::fixtures::route_spec();
        spec.grouping.repeat_interval_seconds = 60;
        let (mut pager, stats) = pager(spec);
        let now = Timestamp::now();
        let long_ago = now - SignedDuration::from_secs(120);
        let signal = backoff(1, long_ago, true);
        let key = GroupKey::of(
            &crate::api::GroupingSpec::default().group_by,
            &signal.candidate,
        );
        let id = (
            "prod".to_string(),
            group_hash(&RouteKey::new("prod", "r"), &key),
        );
        pager.pages.upsert(
            id,
            PageRecord {
                name: "r-0123456789".into(),
                created: long_ago,
                last_seen: Some(long_ago),
                count: Some(1),
                resolved_at: None,
            },
        );
        pager.on_signal(signal);
        assert_eq!(activity(&stats), RouteActivity::default());
        // The same occurrence seen live (not from a relist) is news after the window.
        pager.on_signal(backoff(2, now, false));
        assert_eq!(pager.pages.page_count(), 2);
    }

    #[tokio::test]
    async fn resolved_alerts_close_the_window_and_page_again_on_refire() {
        use crate::routing::AlertStatus::{Firing, Resolved};
        let (mut pager, _) = pager(alert_route_spec());
        pager.on_signal(alert_signal("critical", Firing, None));
        pager.on_signal(alert_signal("critical", Firing, None));
        assert_eq!(pager.pages.page_count(), 1);
        pager.on_signal(alert_signal("critical", Resolved, None));
        pager.on_signal(alert_signal("critical", Firing, None));
        assert_eq!(pager.pages.page_count(), 2);
    }

    fn alert_route_spec() -> AlertRouteSpec {
        let mut spec = crate::fixtures::route_spec();
        spec.alertmanager = Some(crate::api::AlertmanagerSpec {
            matchers: vec!["severity=critical".into()],
            bearer_token_secret_ref: crate::api::SecretKeyRef {
                name: "t".into(),
                key: "token".into(),
            },
        });
        spec
    }

    fn alert_signal(
        severity: &str,
        status: crate::routing::AlertStatus,
        reply: Option<oneshot::Sender<PageOutcome>>,
    ) -> Signal {
        Signal {
            candidate: Candidate::Alert(AlertCandidate {
                labels: BTreeMap::from([("severity".to_string(), severity.to_string())]),
                status,
                route: RouteKey::new("prod", "r"),
                ..Default::default()
            }),
            occurrences: 1,
            received: Timestamp::now(),
            replay: false,
            reply,
        }
    }

    fn group_of(signal: &Signal) -> GroupId {
        let key = GroupKey::of(
            &crate::api::GroupingSpec::default().group_by,
            &signal.candidate,
        );
        (
            "prod".to_string(),
            group_hash(&RouteKey::new("prod", "r"), &key),
        )
    }

    #[tokio::test]
    async fn a_group_wait_makes_the_page_at_once_and_later_signals_only_count() {
        let mut spec = crate::fixtures::route_spec();
        spec.grouping.group_wait_seconds = 30;
        let (mut pager, stats) = pager(spec);
        let now = Timestamp::now();
        pager.on_signal(backoff(1, now, false));
        // Nothing is held in memory: the page is on its way to the API server, waiting there.
        assert!(pager.held.is_empty() && pager.waiting.is_empty());
        assert_eq!(pager.pages.page_count(), 1);
        pager.on_signal(backoff(2, now, false));
        assert_eq!(pager.pages.page_count(), 1);
        assert_eq!(activity(&stats).suppressed, 1);
    }

    #[tokio::test]
    async fn a_resolve_recorded_on_the_page_reopens_the_window_after_a_restart() {
        let spec = alert_route_spec();
        let firing = || alert_signal("critical", crate::routing::AlertStatus::Firing, None);
        let id = group_of(&firing());
        let now = Timestamp::now();
        let paged = PageRecord {
            name: "r-0123456789".into(),
            created: now - SignedDuration::from_secs(100),
            last_seen: None,
            count: None,
            resolved_at: None,
        };
        for (resolved, pages) in [(None, 1), (Some(now - SignedDuration::from_secs(50)), 2)] {
            // A fresh process: its tracker knows nothing, the AlertCalls tell.
            let (mut pager, _) = pager(spec.clone());
            let record = PageRecord {
                resolved_at: resolved,
                ..paged.clone()
            };
            pager.pages.upsert(id.clone(), record);
            pager.on_signal(firing());
            let made = pager.pages.page_count();
            assert_eq!(made, pages, "resolved at {resolved:?}");
        }
    }

    #[tokio::test]
    async fn a_resolve_is_written_on_the_newest_page_only_when_it_is_news() {
        let (mut pager, _) = pager(alert_route_spec());
        let now = Timestamp::now();
        let resolved = || {
            let mut signal = alert_signal("critical", crate::routing::AlertStatus::Resolved, None);
            if let Candidate::Alert(alert) = &mut signal.candidate {
                alert.ends_at = Some(now - SignedDuration::from_secs(10));
            }
            signal
        };
        let id = group_of(&resolved());
        // No page: nothing to write.
        pager.on_signal(resolved());
        assert!(pager.jobs.is_empty());
        let record = |resolved_at| PageRecord {
            name: "r-0123456789".into(),
            created: now - SignedDuration::from_secs(100),
            last_seen: None,
            count: None,
            resolved_at,
        };
        pager.pages.upsert(id.clone(), record(None));
        pager.on_signal(resolved());
        assert_eq!(pager.jobs.len(), 1);
        assert!(pager.pages.resolved_at(&id).is_some());
        // Already recorded (a duplicate from another Alertmanager): no second write.
        pager.on_signal(resolved());
        assert_eq!(pager.jobs.len(), 1);
    }

    /// Runs the pager's finished jobs through `on_done`, as its loop does.
    async fn finish_jobs(pager: &mut PagerTask) {
        while let Some(done) = pager.jobs.join_next().await {
            if let Ok(done) = done {
                pager.on_done(done);
            }
        }
    }

    #[tokio::test]
    async fn replies_wait_for_the_create_and_carry_its_failure() {
        let (mut pager, _) = pager(alert_route_spec());
        let (first, first_rx) = oneshot::channel();
        let (second, mut second_rx) = oneshot::channel();
        let (other, other_rx) = oneshot::channel();
        let firing = crate::routing::AlertStatus::Firing;
        pager.on_signal(alert_signal("critical", firing, Some(first)));
        // The same group while its create is in flight: settled only with the create.
        pager.on_signal(alert_signal("critical", firing, Some(second)));
        assert!(second_rx.try_recv().is_err());
        // An alert no route matches is settled at once.
        pager.on_signal(alert_signal("info", firing, Some(other)));
        assert_eq!(other_rx.await.ok(), Some(PageOutcome::Settled));
        // This pager's API server is unreachable: the create fails, and both hear it.
        finish_jobs(&mut pager).await;
        for rx in [first_rx, second_rx] {
            match rx.await {
                Ok(PageOutcome::Failed(error)) => {
                    assert!(error.contains("cannot create AlertCall prod/r-"), "{error}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(pager.replies.is_empty() && pager.in_flight.is_empty());
        // The pager retries on its own too (an Event's page has nobody else to retry it).
        assert_eq!(pager.held.len(), 1);
    }
}
