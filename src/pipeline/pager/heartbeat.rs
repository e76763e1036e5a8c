//! Heartbeat routes: their signals are beats, and the silence between them pages.
//!
//! A beat is a firing signal the route matches, dated by the signal's own time (a relisted beat
//! after a restart is as old as it is). The route's last beat is kept in its status, so a
//! restarted operator knows it; the first page still waits one interval after this process
//! began watching the route (start, creation or a takeover), so a restart never fires on a
//! silence it did not see. The silence page is an ordinary group of the route: the repeat
//! window comes from the AlertCalls, and a returning beat resolves it.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::PagerTask;
use crate::api::AlertRoute;
use crate::routing::{AlertCandidate, AlertStatus, Candidate, CompiledRoute, GroupKey, RouteKey};

/// `alertname` of a silence page.
pub const HEARTBEAT_MISSING: &str = "HeartbeatMissing";

impl PagerTask {
    /// Records a beat of a heartbeat route, and resolves its silence page if one is open.
    pub(super) fn on_beat(
        &mut self,
        route: &CompiledRoute,
        candidate: &Candidate,
        now: Timestamp,
        leader: bool,
    ) {
        if candidate.is_resolved() {
            return;
        }
        let at = candidate.last_seen().unwrap_or(now).min(now);
        let last = self.beats.entry(route.key.clone()).or_insert(at);
        *last = (*last).max(at);
        if leader {
            self.stats.update(&route.key, |a| {
                a.last_beat_at = a.last_beat_at.max(Some(at))
            });
        } else if matches!(candidate, Candidate::Alert(_)) {
            // NB: an Alertmanager beat reaches one replica only; the leader learns it from the
            // route's status, or it would page for a silence that did not happen.
            self.persist_beat(&route.key, at);
        }
        let silence = missing(route, at, SignedDuration::ZERO);
        let key = GroupKey::of(&route.route.spec.grouping.group_by, &silence);
        self.tracker.resolved(&route.key, &key, at);
        self.record_resolve(&route.key, &key, at, None);
    }

    /// Pages for every active heartbeat route silent for its interval (leader only, once the
    /// AlertCalls are known).
    pub(super) fn check_heartbeats(&mut self, now: Timestamp) {
        let snapshot = self.snapshot();
        let mut watched = BTreeMap::new();
        for route in snapshot.index.heartbeats() {
            let Some(heartbeat) = &route.route.spec.heartbeat else {
                continue;
            };
            let since = *self.beats.entry(route.key.clone()).or_insert(now);
            watched.insert(route.key.clone(), since);
            let persisted = route
                .route
                .status
                .as_ref()
                .and_then(|s| s.last_beat_at.as_ref())
                .map(|t| t.0);
            let last = since.max(persisted.unwrap_or(since));
            let interval = SignedDuration::from_secs(i64::from(heartbeat.interval_seconds));
            if now.duration_since(last) < interval {
                continue;
            }
            let silence = missing(route, last, interval);
            let key = GroupKey::of(&route.route.spec.grouping.group_by, &silence);
            self.tracker.firing(&route.key, &key, now);
            self.decide_group(route, &snapshot, key, &silence, now, None, None);
        }
        // Routes gone or no longer heartbeats: watched afresh (with a grace) if they come back.
        self.beats.retain(|key, _| watched.contains_key(key));
    }

    fn persist_beat(&self, route: &RouteKey, at: Timestamp) {
        let api: Api<AlertRoute> = Api::namespaced(self.shared.client.clone(), &route.namespace);
        let name = route.name.clone();
        let patch = json!({ "status": { "lastBeatAt": Time(at) } });
        tokio::spawn(async move {
            let patched = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            if let Err(error) = patched {
                tracing::warn!(route = %name, %error, "recording a heartbeat on the route's status");
            }
        });
    }
}

/// The synthetic alert a silent route pages with; its group is the same whatever `since` is.
fn missing(route: &CompiledRoute, since: Timestamp, interval: SignedDuration) -> Candidate {
    let RouteKey { namespace, name } = &route.key;
    let summary = format!(
        "No heartbeat from AlertRoute {namespace}/{name} for {}.",
        spoken(interval)
    );
    Candidate::Alert(AlertCandidate {
        labels: BTreeMap::from([
            ("alertname".to_string(), HEARTBEAT_MISSING.to_string()),
            ("namespace".to_string(), namespace.clone()),
            ("instance".to_string(), name.clone()),
        ]),
        annotations: BTreeMap::from([("summary".to_string(), summary)]),
        status: AlertStatus::Firing,
        starts_at: Some(since),
        ends_at: None,
        fingerprint: format!("heartbeat/{namespace}/{name}"),
        route: route.key.clone(),
    })
}

/// A duration as a phone speaks it: `5 minutes`, `1 hour`, `90 seconds`.
fn spoken(interval: SignedDuration) -> String {
    let seconds = interval.as_secs();
    let (count, unit) = if seconds % 3600 == 0 && seconds > 0 {
        (seconds / 3600, "hour")
    } else if seconds % 60 == 0 && seconds > 0 {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::spoken;
    use jiff::SignedDuration;

    #[test]
    fn intervals_are_spoken_in_words() {
        for (seconds, text) in [
            (300, "5 minutes"),
            (60, "1 minute"),
            (3600, "1 hour"),
            (7200, "2 hours"),
            (90, "90 seconds"),
            (1, "1 second"),
        ] {
            assert_eq!(spoken(SignedDuration::from_secs(seconds)), text);
        }
    }
}

#[cfg(test)]
mod pager_tests {
    use jiff::{SignedDuration, Timestamp};

    use super::super::tests::{backoff, pager_on};
    use crate::api::{AlertRoute, AlertRouteStatus, HeartbeatSpec};
    use crate::routing::RouteKey;

    fn heartbeat_route(last_beat: Option<Timestamp>) -> AlertRoute {
        let mut spec = crate::fixtures::route_spec();
        spec.heartbeat = Some(HeartbeatSpec {
            interval_seconds: 60,
        });
        let mut route = AlertRoute::new("r", spec);
        route.metadata.namespace = Some("prod".into());
        route.status = last_beat.map(|at| AlertRouteStatus {
            last_beat_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)),
            ..Default::default()
        });
        route
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    #[tokio::test]
    async fn silence_pages_once_after_a_grace_of_one_interval_and_a_beat_resolves_it() {
        let (mut pager, _) = pager_on(heartbeat_route(None));
        let start = Timestamp::now();
        pager.check_heartbeats(start);
        pager.check_heartbeats(start + secs(59));
        assert_eq!(pager.pages.page_count(), 0, "paged within the grace");
        pager.check_heartbeats(start + secs(60));
        assert_eq!(pager.pages.page_count(), 1);
        pager.check_heartbeats(start + secs(62));
        pager.check_heartbeats(start + secs(600));
        assert_eq!(
            pager.pages.page_count(),
            1,
            "paged again within the repeat window"
        );
        let page = pager.pages.all().next().cloned();
        assert!(page.as_ref().is_some_and(|p| p.resolved_at.is_none()));

        let snapshot = pager.snapshot();
        let route = snapshot.index.heartbeats().next().cloned();
        let Some(route) = route else {
            panic!("no heartbeat route")
        };
        let beat = backoff(1, start + secs(601), false).candidate;
        pager.on_beat(&route, &beat, start + secs(601), true);
        let page = pager.pages.all().next().cloned();
        assert_eq!(page.and_then(|p| p.resolved_at), Some(start + secs(601)));
    }

    #[tokio::test]
    async fn beats_keep_a_route_quiet_and_their_own_time_counts() {
        let (mut pager, stats) = pager_on(heartbeat_route(None));
        let start = Timestamp::now();
        pager.check_heartbeats(start);
        let snapshot = pager.snapshot();
        let Some(route) = snapshot.index.heartbeats().next().cloned() else {
            panic!("no heartbeat route")
        };
        for at in [50, 100, 150] {
            let beat = backoff(1, start + secs(at), false).candidate;
            // Delivered late: the beat's own time is what counts.
            pager.on_beat(&route, &beat, start + secs(at + 5), true);
            pager.check_heartbeats(start + secs(at + 5));
        }
        pager.check_heartbeats(start + secs(209));
        assert_eq!(pager.pages.page_count(), 0);
        let mut last = None;
        stats.update(&RouteKey::new("prod", "r"), |a| last = a.last_beat_at);
        assert_eq!(last, Some(start + secs(150)));
        pager.check_heartbeats(start + secs(210));
        assert_eq!(pager.pages.page_count(), 1);
    }

    #[tokio::test]
    async fn a_beat_another_replica_recorded_on_the_status_counts() {
        let start = Timestamp::now();
        let (mut pager, _) = pager_on(heartbeat_route(Some(start + secs(30))));
        pager.check_heartbeats(start);
        pager.check_heartbeats(start + secs(89));
        assert_eq!(pager.pages.page_count(), 0);
        pager.check_heartbeats(start + secs(90));
        assert_eq!(pager.pages.page_count(), 1);
    }
}
