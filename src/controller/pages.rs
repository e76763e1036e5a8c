//! The pager: candidates from every source become AlertCalls, once per group and repeat window.
//!
//! One task owns all group state, so decisions are serialized: three Alertmanager replicas
//! posting the same alert at once, or a storm of copies of one Event, meet a group that is
//! already paged (the page is recorded before its create is even sent) and only update counters.
//!
//! ```text
//!  sources ─Signal─> pager ─ RouteIndex::matching ─ GroupKey ─ decide(last page from AlertCalls)
//!                      │         Page     ─> create AlertCall (leader; AlreadyExists is harmless);
//!                      │                     with a group wait: spec.notBefore, phase Waiting
//!                      │         Suppress ─> batch spec.source.{lastSeen,count} of the page
//!  watch AlertCalls ───┘ (the last page of each group survives restarts)
//! ```
//!
//! Nothing waits in memory: a group wait is the page's `spec.notBefore`. The AlertCall exists at
//! once (so later signals only count, and a restart forgets nothing) and the AlertCall
//! controller does not dial before then.

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
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::alert_route::{RouteSnapshot, RouteStats, Routes};
use super::Context;
use crate::api::AlertCall;
use crate::metrics::RouteLabels;
use crate::routing::build::LABEL_GROUP_HASH;
use crate::routing::{
    build_alert_call, decide, group_hash, Candidate, CompiledRoute, Decision, GroupKey,
    GroupTracker, PageRequest, RouteKey,
};

/// How often counter updates of paged groups are written, at most.
pub const COUNTER_INTERVAL: Duration = Duration::from_secs(2);
/// A failed create is tried again after this long (the candidate is kept meanwhile).
const CREATE_RETRY: SignedDuration = SignedDuration::from_secs(5);
/// Queue between the sources and the pager; a full queue makes the webhook answer 503.
const QUEUE: usize = 10_000;
/// Group state older than the longest repeat interval (7 days) plus a margin is forgotten.
const FORGET_AFTER: SignedDuration = SignedDuration::from_hours(8 * 24);

/// A candidate signal, as a source hands it to the pager.
#[derive(Debug, Clone)]
pub struct Signal {
    pub candidate: Candidate,
    /// Occurrences this signal adds to its group's count (an Event count bump: the difference).
    pub occurrences: i64,
    pub received: Timestamp,
    /// From a watch's initial list: a previous process may have counted it already.
    pub replay: bool,
}

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

/// One existing page of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRecord {
    pub name: String,
    pub created: Timestamp,
    pub last_seen: Option<Timestamp>,
    pub count: Option<i64>,
}

impl PageRecord {
    /// Counters only grow: a watch event older than our own write must not shrink them.
    fn merge(&mut self, newer: PageRecord) {
        self.created = newer.created;
        self.last_seen = self.last_seen.max(newer.last_seen);
        self.count = match (self.count, newer.count) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

type GroupId = (String, String);

/// The pages of every group, from the AlertCalls carrying the group-hash label.
#[derive(Debug, Default)]
pub struct PageIndex {
    groups: HashMap<GroupId, Vec<PageRecord>>,
    buffer: HashMap<GroupId, Vec<PageRecord>>,
}

fn record_of(call: &AlertCall) -> Option<(GroupId, PageRecord)> {
    let hash = call.labels().get(LABEL_GROUP_HASH)?.clone();
    let created = call.metadata.creation_timestamp.as_ref()?.0;
    Some((
        (call.namespace().unwrap_or_default(), hash),
        PageRecord {
            name: call.name_any(),
            created,
            last_seen: call.spec.source.last_seen.as_ref().map(|t| t.0),
            count: call.spec.source.count,
        },
    ))
}

fn upsert(groups: &mut HashMap<GroupId, Vec<PageRecord>>, id: GroupId, record: PageRecord) {
    let records = groups.entry(id).or_default();
    match records.iter_mut().find(|r| r.name == record.name) {
        Some(existing) => existing.merge(record),
        None => records.push(record),
    }
}

impl PageIndex {
    pub fn upsert(&mut self, id: GroupId, record: PageRecord) {
        upsert(&mut self.groups, id, record);
    }

    pub fn remove(&mut self, id: &GroupId, name: &str) {
        if let Some(records) = self.groups.get_mut(id) {
            records.retain(|r| r.name != name);
            if records.is_empty() {
                self.groups.remove(id);
            }
        }
    }

    /// The newest page of a group.
    pub fn latest(&self, id: &GroupId) -> Option<&PageRecord> {
        self.groups.get(id)?.iter().max_by_key(|r| r.created)
    }

    fn find_mut(&mut self, name_namespace: &(String, String)) -> Option<&mut PageRecord> {
        let (namespace, name) = name_namespace;
        self.groups
            .iter_mut()
            .filter(|((ns, _), _)| ns == namespace)
            .flat_map(|(_, records)| records.iter_mut())
            .find(|r| &r.name == name)
    }

    fn on_event(&mut self, event: watcher::Event<DeserializeGuard<AlertCall>>) -> bool {
        match event {
            watcher::Event::Apply(DeserializeGuard(Ok(call))) => {
                if let Some((id, record)) = record_of(&call) {
                    self.upsert(id, record);
                }
            }
            watcher::Event::Delete(DeserializeGuard(Ok(call))) => {
                if let Some((id, record)) = record_of(&call) {
                    self.remove(&id, &record.name);
                }
            }
            watcher::Event::Init => self.buffer.clear(),
            watcher::Event::InitApply(DeserializeGuard(Ok(call))) => {
                if let Some((id, record)) = record_of(&call) {
                    upsert(&mut self.buffer, id, record);
                }
            }
            watcher::Event::InitDone => {
                let mut fresh = std::mem::take(&mut self.buffer);
                // Our own writes may be newer than the list: keep their counters.
                for (id, records) in fresh.iter_mut() {
                    for record in records.iter_mut() {
                        if let Some(old) = self
                            .groups
                            .get(id)
                            .and_then(|rs| rs.iter().find(|r| r.name == record.name))
                        {
                            let mut merged = old.clone();
                            merged.merge(record.clone());
                            *record = merged;
                        }
                    }
                }
                self.groups = fresh;
                return true;
            }
            // Objects that do not parse are not pages we made.
            _ => {}
        }
        false
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
}

/// Starts the pager; its task runs until shutdown.
pub fn spawn(
    ctx: Arc<Context>,
    routes: Routes,
    stats: RouteStats,
    tasks: &mut JoinSet<()>,
) -> Pager {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (ready_tx, ready) = watch::channel(false);
    let task = PagerTask::new(ctx, routes, stats, false);
    tasks.spawn(task.run(rx, ready_tx));
    Pager { tx, ready }
}

struct PagerTask {
    ctx: Arc<Context>,
    routes: Routes,
    stats: RouteStats,
    tracker: GroupTracker,
    pages: PageIndex,
    /// Groups to decide again at a time (a create to retry).
    waiting: BTreeMap<Timestamp, Vec<(RouteKey, GroupKey)>>,
    /// The latest candidate of each waiting group.
    held: HashMap<(RouteKey, GroupKey), Candidate>,
    /// Pages decided while another replica leads: decided again if this one takes over.
    deferred: HashMap<(RouteKey, GroupKey), (Candidate, Timestamp)>,
    counters: HashMap<(String, String), PendingCounter>,
    jobs: JoinSet<Done>,
    was_leader: bool,
}

fn until(at: Timestamp) -> tokio::time::Instant {
    let wait = at.duration_since(Timestamp::now());
    let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + wait
}

impl PagerTask {
    fn new(ctx: Arc<Context>, routes: Routes, stats: RouteStats, was_leader: bool) -> Self {
        Self {
            ctx,
            routes,
            stats,
            tracker: GroupTracker::default(),
            pages: PageIndex::default(),
            waiting: BTreeMap::new(),
            held: HashMap::new(),
            deferred: HashMap::new(),
            counters: HashMap::new(),
            jobs: JoinSet::new(),
            was_leader,
        }
    }
}

impl PagerTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Signal>, ready: watch::Sender<bool>) {
        let api: Api<DeserializeGuard<AlertCall>> = match &self.ctx.config.namespace {
            Some(ns) => Api::namespaced(self.ctx.client.clone(), ns),
            None => Api::all(self.ctx.client.clone()),
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
                self.ctx.readiness.set_ready("alertcalls");
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
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn snapshot(&self) -> Arc<RouteSnapshot> {
        self.routes.borrow().clone()
    }

    fn on_signal(&mut self, signal: Signal) {
        let snapshot = self.snapshot();
        let now = Timestamp::now();
        let leader = self.ctx.leader.is_leader();
        for route in snapshot.index.matching(&signal.candidate) {
            let key = GroupKey::of(&route.route.spec.grouping.group_by, &signal.candidate);
            if signal.candidate.is_resolved() {
                let at = match &signal.candidate {
                    Candidate::Alert(alert) => alert.ends_at.filter(|t| *t <= now),
                    Candidate::Event(_) => None,
                };
                self.tracker.resolved(&route.key, &key, at.unwrap_or(now));
                self.held.remove(&(route.key.clone(), key.clone()));
                self.deferred.remove(&(route.key.clone(), key));
                continue;
            }
            if signal.replay && self.covered(&route.key, &key, &signal.candidate) {
                // NB: relisted after a restart, and already part of the group's page: with a
                // repeat interval shorter than the maximum event age it would page again.
                continue;
            }
            if leader {
                self.stats.update(&route.key, |a| {
                    a.matched += 1;
                    a.last_matched_at = a.last_matched_at.max(Some(now));
                });
            }
            self.tracker.firing(&route.key, &key, now);
            self.decide_group(route, &snapshot, key, &signal.candidate, now, Some(&signal));
        }
    }

    /// The group's newest page already saw this signal's last occurrence.
    fn covered(&self, route: &RouteKey, key: &GroupKey, candidate: &Candidate) -> bool {
        let id: GroupId = (route.namespace.clone(), group_hash(route, key));
        match (candidate.last_seen(), self.pages.latest(&id)) {
            (Some(seen), Some(page)) => page.last_seen.is_some_and(|covered| seen <= covered),
            _ => false,
        }
    }

    fn decide_group(
        &mut self,
        route: &CompiledRoute,
        snapshot: &RouteSnapshot,
        key: GroupKey,
        candidate: &Candidate,
        now: Timestamp,
        signal: Option<&Signal>,
    ) {
        let leader = self.ctx.leader.is_leader();
        let id: GroupId = (route.key.namespace.clone(), group_hash(&route.key, &key));
        let mut state = self.tracker.state(&route.key, &key);
        // NB: the last page comes from AlertCalls (and pages this process just decided), never
        // from memory alone, so a restarted or newly elected replica does not page a group again.
        state.last_page = self.pages.latest(&id).map(|page| page.created);
        let group = (route.key.clone(), key.clone());
        match decide(&route.key, &key, &route.route.spec.grouping, &state, now) {
            Decision::Page {
                name, not_before, ..
            } => {
                self.held.remove(&group);
                if !leader {
                    self.deferred.insert(group, (candidate.clone(), now));
                    return;
                }
                self.deferred.remove(&group);
                self.page(route, snapshot, key, candidate, &name, id, now, not_before);
            }
            Decision::Suppress { .. } => {
                if leader && signal.is_some() {
                    self.stats.update(&route.key, |a| a.suppressed += 1);
                    self.ctx
                        .metrics
                        .suppressed
                        .get_or_create(&route_labels(&route.key))
                        .inc();
                }
                if let (Some(signal), Some(page)) = (signal, self.pages.latest(&id)) {
                    self.count(&route.key.namespace, page.clone(), signal);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn page(
        &mut self,
        route: &CompiledRoute,
        snapshot: &RouteSnapshot,
        key: GroupKey,
        candidate: &Candidate,
        name: &str,
        id: GroupId,
        now: Timestamp,
        not_before: Option<Timestamp>,
    ) {
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
            },
        );
        let api: Api<AlertCall> = Api::namespaced(self.ctx.client.clone(), &route.key.namespace);
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

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Created {
                namespace,
                id,
                group,
                candidate,
                name,
                result,
            } => match result {
                Ok(call) => {
                    tracing::info!(namespace = %namespace, alertcall = %name, route = %group.0, group = %group.1, "paged");
                    self.ctx
                        .metrics
                        .pages
                        .get_or_create(&route_labels(&group.0))
                        .inc();
                    self.stats
                        .update(&group.0, |a| a.last_alert_call = Some(name.clone()));
                    if let Some((id, record)) = record_of(&call) {
                        self.pages.upsert(id, record);
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    // Another replica, a previous process or a duplicate signal made it first.
                    tracing::debug!(namespace = %namespace, alertcall = %name, "page exists already");
                }
                Err(error) => {
                    tracing::error!(namespace = %namespace, alertcall = %name, %error, "cannot create the AlertCall; retrying");
                    self.ctx.metrics.reconcile_error("pager", "CreateFailed");
                    self.pages.remove(&id, &name);
                    let at = Timestamp::now()
                        .saturating_add(CREATE_RETRY)
                        .unwrap_or_else(|_| Timestamp::now());
                    self.held.insert(group.clone(), *candidate);
                    self.waiting.entry(at).or_default().push(group);
                }
            },
            Done::Patched {
                page,
                pending,
                result,
            } => match result {
                Ok(call) => {
                    if let Some((id, record)) = record_of(&call) {
                        self.pages.upsert(id, record);
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => {
                    tracing::warn!(alertcall = %page.1, %error, "updating page counters");
                    if let Some(record) = self.pages.find_mut(&page) {
                        if pending.counted {
                            record.count = record.count.map(|c| c - pending.add);
                        }
                    }
                    let retry = self.counters.entry(page).or_default();
                    retry.add += pending.add;
                    retry.counted |= pending.counted;
                    retry.last_seen = retry.last_seen.max(pending.last_seen);
                }
            },
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
                        self.decide_group(route, &snapshot, group.1, &candidate, now, None);
                    }
                    _ => {
                        self.held.remove(&group);
                    }
                }
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Timestamp::now();
        let leader = self.ctx.leader.is_leader();
        if leader && !self.was_leader {
            self.take_over(now);
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
            let max_age =
                SignedDuration::try_from(self.ctx.config.max_event_age).unwrap_or_default();
            self.deferred
                .retain(|_, (_, at)| now.duration_since(*at) <= max_age);
        }
    }

    /// Newly elected: pages the previous leader may not have made (AlertCalls tell).
    fn take_over(&mut self, now: Timestamp) {
        let max_age = SignedDuration::try_from(self.ctx.config.max_event_age).unwrap_or_default();
        let deferred = std::mem::take(&mut self.deferred);
        let snapshot = self.snapshot();
        for ((route_key, key), (candidate, at)) in deferred {
            if now.duration_since(at) > max_age {
                continue;
            }
            if let Some(route) = snapshot.index.get(&route_key) {
                if route.matches(&candidate) {
                    self.decide_group(route, &snapshot, key, &candidate, now, None);
                }
            }
        }
    }

    fn flush_counters(&mut self) {
        for (page, pending) in std::mem::take(&mut self.counters) {
            let Some(record) = self.pages.find_mut(&page) else {
                continue;
            };
            let mut source = serde_json::Map::new();
            if let Some(seen) = pending.last_seen {
                if record.last_seen.is_none_or(|last| seen > last) {
                    record.last_seen = Some(seen);
                    source.insert("lastSeen".into(), json!(seen.to_string()));
                }
            }
            if pending.counted && pending.add > 0 {
                let count = record.count.unwrap_or(0) + pending.add;
                record.count = Some(count);
                source.insert("count".into(), json!(count));
            }
            if source.is_empty() {
                continue;
            }
            let api: Api<AlertCall> = Api::namespaced(self.ctx.client.clone(), &page.0);
            let patch = json!({ "spec": { "source": source } });
            self.jobs.spawn(async move {
                let result = api
                    .patch(&page.1, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                Done::Patched {
                    page,
                    pending,
                    result,
                }
            });
        }
    }
}

fn route_labels(key: &RouteKey) -> RouteLabels {
    RouteLabels {
        namespace: key.namespace.clone(),
        route: key.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AlertRouteSpec;
    use crate::controller::alert_route::RouteActivity;
    use crate::controller::Config;
    use crate::routing::{AlertCandidate, RouteIndex};

    /// A pager on a client that reaches nothing: decisions only (creates fail in the background).
    fn pager(spec: AlertRouteSpec) -> (PagerTask, RouteStats) {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap_or_default());
        let client = kube::Client::try_from(config).unwrap_or_else(|e| panic!("client: {e}"));
        let (_, shutdown) = watch::channel(false);
        let ctx = Arc::new(Context::new(
            client,
            Config::local("test"),
            crate::leader::Leadership::always(),
            shutdown,
        ));
        let mut route = crate::api::AlertRoute::new("r", spec);
        route.metadata.namespace = Some("prod".into());
        let snapshot = RouteSnapshot {
            index: RouteIndex::new([route]),
            synced: true,
            ..Default::default()
        };
        let (_publish, routes) = watch::channel(Arc::new(snapshot));
        let stats = RouteStats::default();
        let task = PagerTask::new(ctx, routes, stats.clone(), true);
        (task, stats)
    }

    fn activity(stats: &RouteStats) -> RouteActivity {
        let mut found = RouteActivity::default();
        stats.update(&RouteKey::new("prod", "r"), |a| found = a.clone());
        found
    }

    fn backoff(count: i64, last_seen: Timestamp, replay: bool) -> Signal {
        Signal {
            candidate: Candidate::Event(crate::fixtures::backoff_event(count, last_seen)),
            occurrences: 1,
            received: last_seen,
            replay,
        }
    }

    #[tokio::test]
    async fn duplicates_page_once_and_later_signals_only_count() {
        let (mut pager, stats) = pager(crate::fixtures::route_spec());
        let now = Timestamp::now();
        for _ in 0..3 {
            pager.on_signal(backoff(1, now, false));
        }
        assert_eq!(pager.pages.groups.values().map(Vec::len).sum::<usize>(), 1);
        let seen = activity(&stats);
        assert_eq!((seen.matched, seen.suppressed), (3, 2));
        let pending: Vec<&PendingCounter> = pager.counters.values().collect();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].add, pending[0].counted), (2, true));
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
            },
        );
        pager.on_signal(signal);
        assert_eq!(activity(&stats), RouteActivity::default());
        // The same occurrence seen live (not from a relist) is news after the window.
        pager.on_signal(backoff(2, now, false));
        assert_eq!(pager.pages.groups.values().map(Vec::len).sum::<usize>(), 2);
    }

    #[tokio::test]
    async fn resolved_alerts_close_the_window_and_page_again_on_refire() {
        let mut spec = crate::fixtures::route_spec();
        spec.alertmanager = Some(crate::api::AlertmanagerSpec {
            matchers: vec!["severity=critical".into()],
            bearer_token_secret_ref: crate::api::SecretKeyRef {
                name: "t".into(),
                key: "token".into(),
            },
        });
        let (mut pager, _) = pager(spec);
        let alert = |status| Signal {
            candidate: Candidate::Alert(AlertCandidate {
                labels: BTreeMap::from([("severity".to_string(), "critical".to_string())]),
                status,
                route: RouteKey::new("prod", "r"),
                ..Default::default()
            }),
            occurrences: 1,
            received: Timestamp::now(),
            replay: false,
        };
        pager.on_signal(alert(crate::routing::AlertStatus::Firing));
        pager.on_signal(alert(crate::routing::AlertStatus::Firing));
        assert_eq!(pager.pages.groups.values().map(Vec::len).sum::<usize>(), 1);
        pager.on_signal(alert(crate::routing::AlertStatus::Resolved));
        pager.on_signal(alert(crate::routing::AlertStatus::Firing));
        assert_eq!(pager.pages.groups.values().map(Vec::len).sum::<usize>(), 2);
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
        assert_eq!(pager.pages.groups.values().map(Vec::len).sum::<usize>(), 1);
        pager.on_signal(backoff(2, now, false));
        assert_eq!(pager.pages.groups.values().map(Vec::len).sum::<usize>(), 1);
        assert_eq!(activity(&stats).suppressed, 1);
    }

    fn record(name: &str, created: i64, count: Option<i64>) -> PageRecord {
        PageRecord {
            name: name.into(),
            created: crate::fixtures::at(created),
            last_seen: Some(crate::fixtures::at(created)),
            count,
        }
    }

    #[test]
    fn latest_page_wins_and_counters_only_grow() {
        let mut index = PageIndex::default();
        let id = ("prod".to_string(), "abc".to_string());
        index.upsert(id.clone(), record("a", 100, Some(5)));
        index.upsert(id.clone(), record("b", 200, Some(1)));
        assert_eq!(index.latest(&id).map(|r| r.name.as_str()), Some("b"));
        // A stale watch event of "a" does not lower what we wrote.
        index.upsert(id.clone(), record("a", 100, Some(3)));
        let a = index
            .groups
            .get(&id)
            .and_then(|rs| rs.iter().find(|r| r.name == "a"))
            .and_then(|r| r.count);
        assert_eq!(a, Some(5));
        index.remove(&id, "b");
        assert_eq!(index.latest(&id).map(|r| r.name.as_str()), Some("a"));
    }
}
