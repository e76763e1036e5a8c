//! The pages this process knows: the controller's watch cache, and what the process itself
//! wrote that the watch has not delivered yet.
//!
//! Why both: a dial is placed right after the status write that records its intent, and
//! Twilio's first status callback (`initiated`) can arrive before the watch delivers that write.
//! Checked against the cache alone, the callback names an attempt the page does not have yet and
//! is refused, and Twilio does not deliver a refused status callback again. Every version looked
//! at is one the API server accepted, so reading the own write too lets nothing in that the page
//! did not hold.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::{valid, Guarded};
use crate::api::AlertCall;

/// How long a page's own write is kept: far longer than a watch takes to deliver it, short
/// enough that a burst of pages is forgotten soon after.
const OWN_WRITE_KEPT: Duration = Duration::from_secs(60);

/// Whether an own write made at `at` is still kept.
fn still_kept(at: &Instant) -> bool {
    at.elapsed() < OWN_WRITE_KEPT
}

/// Each page's latest own write, by namespace and name, with when it was written.
type Written = HashMap<(String, String), (AlertCall, Instant)>;

/// The latest status write of each page by this process, for [`OWN_WRITE_KEPT`].
#[derive(Clone, Default)]
pub struct OwnWrites(Arc<Mutex<Written>>);

impl OwnWrites {
    fn lock(&self) -> MutexGuard<'_, Written> {
        // NB: a panic elsewhere while holding the lock leaves whole entries, still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps the page as the API server returned it from a write.
    pub fn remember(&self, written: &AlertCall) {
        let mut kept = written.clone();
        crate::api::forget_bookkeeping(&mut kept.metadata);
        let key = (written.namespace().unwrap_or_default(), written.name_any());
        let mut writes = self.lock();
        writes.retain(|_, (_, at)| still_kept(at));
        writes.insert(key, (kept, Instant::now()));
    }

    fn latest(&self, namespace: &str, name: &str) -> Option<AlertCall> {
        self.lock()
            .get(&(namespace.to_string(), name.to_string()))
            .filter(|(_, at)| still_kept(at))
            .map(|(call, _)| call.clone())
    }
}

/// The controller's cache of every page it watches, with this process's own recent writes;
/// shared with the callback endpoints.
#[derive(Clone)]
pub struct Pages {
    cache: Store<Guarded>,
    own_writes: OwnWrites,
}

impl Pages {
    pub fn new(cache: Store<Guarded>, own_writes: OwnWrites) -> Self {
        Self { cache, own_writes }
    }

    /// The watch cache alone: what scans over every page (budgets, round-robin) read.
    pub fn cached(&self) -> Vec<Arc<Guarded>> {
        self.cache.state()
    }

    /// Every version of one page this process may go by, the cache's first, then its own latest
    /// write when that is another version (the watch has not delivered it yet, or a later write
    /// by someone else has replaced it: both were the page at some time).
    pub fn versions(&self, namespace: &str, name: &str) -> Vec<AlertCall> {
        let cached = self
            .cache
            .get(&ObjectRef::new(name).within(namespace))
            .and_then(|guarded| valid(&guarded).cloned());
        let own = self.own_writes.latest(namespace, name);
        let same = |a: &AlertCall, b: &AlertCall| a.resource_version() == b.resource_version();
        match (cached, own) {
            (Some(cached), Some(own)) if !same(&cached, &own) => vec![cached, own],
            (cached, own) => cached.or(own).into_iter().collect(),
        }
    }

    /// Every call SID a page records: a lookup or a callback never ties one of them to another
    /// attempt.
    pub fn claimed_sids(&self) -> BTreeSet<String> {
        let mut claimed = BTreeSet::new();
        let mut add = |call: &AlertCall| {
            let attempts = call.status.iter().flat_map(|status| &status.attempts);
            claimed.extend(attempts.filter_map(|a| a.call_sid.clone()));
        };
        for guarded in self.cache.state() {
            if let Some(call) = valid(&guarded) {
                add(call);
            }
        }
        let own = self.own_writes.lock();
        for (call, _) in own.values().filter(|(_, at)| still_kept(at)) {
            add(call);
        }
        claimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AlertCallStatus, Attempt};
    use kube::core::DeserializeGuard;
    use kube::runtime::{reflector, watcher};

    fn page(version: &str, attempts: &[(&str, Option<&str>)]) -> AlertCall {
        let mut call = AlertCall::new(
            "page",
            serde_json::from_value(serde_json::json!({
                "policyRef": {"name": "oncall"},
                "summary": "s",
            }))
            .unwrap_or_else(|e| panic!("spec: {e}")),
        );
        call.metadata.namespace = Some("ns".into());
        call.metadata.resource_version = Some(version.into());
        call.status = Some(AlertCallStatus {
            attempts: attempts
                .iter()
                .map(|(id, sid)| Attempt {
                    id: id.to_string(),
                    call_sid: sid.map(str::to_string),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        call
    }

    fn attempt_ids(versions: &[AlertCall]) -> Vec<Vec<String>> {
        versions
            .iter()
            .map(|call| {
                let status = call.status.clone().unwrap_or_default();
                status.attempts.into_iter().map(|a| a.id).collect()
            })
            .collect()
    }

    #[test]
    fn a_write_the_watch_has_not_delivered_is_a_version_of_its_page() {
        let (cache, mut writer) = reflector::store::<DeserializeGuard<AlertCall>>();
        let own_writes = OwnWrites::default();
        let pages = Pages::new(cache, own_writes.clone());
        assert!(pages.versions("ns", "page").is_empty());

        // The intent was written; the dial's SID is recorded; the watch lags behind both.
        writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(page("1", &[])))));
        own_writes.remember(&page("2", &[("r1-alice", None)]));
        assert_eq!(
            attempt_ids(&pages.versions("ns", "page")),
            [vec![], vec!["r1-alice".to_string()]]
        );
        own_writes.remember(&page("3", &[("r1-alice", Some("CA1"))]));
        assert_eq!(pages.claimed_sids(), ["CA1".to_string()].into());
        assert!(pages.versions("ns", "other").is_empty());
        assert!(pages.versions("other", "page").is_empty());

        // Delivered: one version.
        writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(page(
            "3",
            &[("r1-alice", Some("CA1"))],
        )))));
        assert_eq!(
            attempt_ids(&pages.versions("ns", "page")),
            [vec!["r1-alice".to_string()]]
        );
    }
}
