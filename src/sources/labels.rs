//! Labels of the objects Events are about and of Namespaces, from metadata-only watches: a
//! storm of events costs map lookups, never a GET per event.
//!
//! Kinds named by routes with an `objectSelector` are watched up front (resolved through
//! discovery); any other kind an Event names is watched from its first Event on (resolved from
//! the Event's `involvedObject.apiVersion`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use kube::core::{GroupVersionKind, PartialObjectMeta};
use kube::discovery::{pinned_kind, Discovery, Scope};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a lookup waits for a new watch's initial list.
const READY_WAIT: Duration = Duration::from_secs(5);
/// How long a lookup of a live Event waits for an object the cache does not hold yet: an Event
/// can arrive before the watch of the object it is about delivers the object.
const MISSING_WAIT: Duration = Duration::from_secs(1);
/// Labels of deleted objects are kept this long: Events about an evicted or killed Pod often
/// arrive after the Pod is gone, and must still match its labels.
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(50);
/// Discovery is run again for a kind it did not know at most this often.
const REDISCOVER: Duration = Duration::from_secs(60);

type Labels = BTreeMap<String, String>;

/// An object's labels as the cache holds them: every key and value in one string, each
/// preceded by its length in bytes (`3:app3:api`), unpacked only for the Events that ask. A
/// `BTreeMap` of `String`s costs a node of eleven slots plus two allocations a label, about
/// 800 bytes for a Pod's four labels; with 5,000 Pods that was most of the cache
/// (`benches/scale.rs`). Packed they cost their own bytes and a few digits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packed(Box<str>);

impl Packed {
    fn pack(labels: &Labels) -> Self {
        let mut text = String::new();
        for (key, value) in labels {
            for part in [key, value] {
                text.push_str(&part.len().to_string());
                text.push(':');
                text.push_str(part);
            }
        }
        Packed(text.into_boxed_str())
    }

    fn unpack(&self) -> Labels {
        let mut parts = Vec::new();
        let mut rest: &str = &self.0;
        while let Some((length, tail)) = rest.split_once(':') {
            let Some(part) = length.parse().ok().and_then(|n: usize| tail.get(..n)) else {
                break;
            };
            parts.push(part);
            rest = &tail[part.len()..];
        }
        parts
            .chunks_exact(2)
            .map(|pair| (pair[0].to_string(), pair[1].to_string()))
            .collect()
    }
}

/// `namespace/name`: names of namespaces cannot hold a `/`, so the key is unique; one
/// allocation instead of two.
type Key = Box<str>;

fn key(namespace: &str, name: &str) -> Key {
    format!("{namespace}/{name}").into_boxed_str()
}

/// Labels of the objects of one kind, by (namespace, name).
struct KindLabels {
    objects: RwLock<Objects>,
    ready: watch::Receiver<bool>,
}

#[derive(Default)]
struct Objects {
    live: HashMap<Key, Packed>,
    deleted: HashMap<Key, (Instant, Packed)>,
}

impl Objects {
    fn delete(&mut self, key: Key) {
        if let Some(labels) = self.live.remove(&key) {
            self.deleted
                .retain(|_, (at, _)| at.elapsed() < TOMBSTONE_TTL);
            self.deleted.insert(key, (Instant::now(), labels));
        }
    }
}

impl KindLabels {
    fn get(&self, namespace: &str, name: &str) -> Option<Labels> {
        let objects = self.objects.read().ok()?;
        let key = key(namespace, name);
        objects
            .live
            .get(&key)
            .or_else(|| objects.deleted.get(&key).map(|(_, labels)| labels))
            .map(Packed::unpack)
    }

    /// Waits for the initial list, then (for live Events) for the object to show up, within
    /// the bounds above.
    async fn lookup(&self, namespace: &str, name: &str, wait_missing: bool) -> Option<Labels> {
        let mut ready = self.ready.clone();
        let _ = tokio::time::timeout(READY_WAIT, ready.wait_for(|r| *r)).await;
        let deadline = Instant::now()
            + if wait_missing {
                MISSING_WAIT
            } else {
                Duration::ZERO
            };
        loop {
            if let Some(labels) = self.get(namespace, name) {
                return Some(labels);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Feeds a metadata watch into a [`KindLabels`] until the task is aborted.
fn watch_labels<K>(
    stream: impl futures::Stream<Item = watcher::Result<watcher::Event<PartialObjectMeta<K>>>>
        + Send
        + 'static,
    what: String,
) -> (
    Arc<KindLabels>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: Resource + Send + 'static,
{
    let (ready_tx, ready) = watch::channel(false);
    let labels = Arc::new(KindLabels {
        objects: RwLock::new(Objects::default()),
        ready,
    });
    let target = labels.clone();
    let task = async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        let mut buffer: HashMap<Key, Packed> = HashMap::new();
        let key_of = |meta: &PartialObjectMeta<K>| {
            key(
                meta.namespace().as_deref().unwrap_or_default(),
                &meta.name_any(),
            )
        };
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(what = %what, %error, "watching object labels");
                    continue;
                }
            };
            let Ok(mut objects) = target.objects.write() else {
                return;
            };
            match event {
                watcher::Event::Apply(meta) => {
                    objects
                        .live
                        .insert(key_of(&meta), Packed::pack(meta.labels()));
                }
                watcher::Event::Delete(meta) => objects.delete(key_of(&meta)),
                watcher::Event::Init => buffer.clear(),
                watcher::Event::InitApply(meta) => {
                    buffer.insert(key_of(&meta), Packed::pack(meta.labels()));
                }
                watcher::Event::InitDone => {
                    let fresh = std::mem::take(&mut buffer);
                    let gone: Vec<_> = objects
                        .live
                        .keys()
                        .filter(|key| !fresh.contains_key(*key))
                        .cloned()
                        .collect();
                    for key in gone {
                        objects.delete(key);
                    }
                    objects.live = fresh;
                    ready_tx.send_replace(true);
                }
            }
        }
    };
    (labels, task)
}

/// The label caches of one operator process. Dropping it stops its watches.
pub struct LabelCache {
    client: Client,
    /// Namespaced kinds are watched in this namespace only.
    namespace: Option<String>,
    namespaces: Arc<KindLabels>,
    kinds: tokio::sync::Mutex<HashMap<(String, String), Arc<KindLabels>>>,
    discovery: tokio::sync::Mutex<Option<(Instant, Arc<Discovery>)>>,
    tasks: Mutex<JoinSet<()>>,
}

impl LabelCache {
    pub fn new(client: Client, namespace: Option<String>) -> Self {
        let mut config = watcher::Config::default();
        if let Some(ns) = &namespace {
            config = config.fields(&format!("metadata.name={ns}"));
        }
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let (namespaces, task) = watch_labels(watcher(api, config), "namespaces".to_string());
        let mut tasks = JoinSet::new();
        tasks.spawn(task);
        Self {
            client,
            namespace,
            namespaces,
            kinds: tokio::sync::Mutex::new(HashMap::new()),
            discovery: tokio::sync::Mutex::new(None),
            tasks: Mutex::new(tasks),
        }
    }

    /// Labels of a Namespace (empty if it does not exist). `live`: the Event just happened, so
    /// the Namespace may not have reached the cache yet.
    pub async fn namespace_labels(&self, name: &str, live: bool) -> Labels {
        self.namespaces
            .lookup("", name, live)
            .await
            .unwrap_or_default()
    }

    /// Labels of the object an Event is about (empty if unknown), also shortly after it was
    /// deleted.
    pub async fn object_labels(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        live: bool,
    ) -> Labels {
        let group = api_version
            .rsplit_once('/')
            .map(|(group, _)| group)
            .unwrap_or("");
        let labels = match self.kind(group, kind, Some(api_version)).await {
            Some(labels) => labels,
            None => return Labels::new(),
        };
        labels
            .lookup(namespace, name, live)
            .await
            .unwrap_or_default()
    }

    /// Starts watching kinds named by routes (bare kind names such as `Pod`), so the first
    /// Event about them does not wait for a list.
    pub async fn prepare(&self, kinds: &[String]) {
        let missing: Vec<&String> = {
            let known = self.kinds.lock().await;
            kinds
                .iter()
                .filter(|kind| !known.keys().any(|(_, k)| k == *kind))
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let Some(discovery) = self.discovery(false).await else {
            return;
        };
        for kind in missing {
            match resolve(&discovery, kind) {
                Some((group, _)) => {
                    let _ = self.kind(&group, kind, None).await;
                }
                None => {
                    tracing::warn!(kind = %kind, "no API serves this kind; objectSelector cannot match it")
                }
            }
        }
    }

    async fn discovery(&self, refresh: bool) -> Option<Arc<Discovery>> {
        let mut cached = self.discovery.lock().await;
        if let Some((at, discovery)) = cached.as_ref() {
            if !refresh || at.elapsed() < REDISCOVER {
                return Some(discovery.clone());
            }
        }
        match Discovery::new(self.client.clone()).run().await {
            Ok(discovery) => {
                let discovery = Arc::new(discovery);
                *cached = Some((Instant::now(), discovery.clone()));
                Some(discovery)
            }
            Err(error) => {
                tracing::warn!(%error, "API discovery failed");
                None
            }
        }
    }

    /// The cache of (group, kind), started on first use.
    async fn kind(
        &self,
        group: &str,
        kind: &str,
        api_version: Option<&str>,
    ) -> Option<Arc<KindLabels>> {
        let mut kinds = self.kinds.lock().await;
        let key = (group.to_string(), kind.to_string());
        if let Some(labels) = kinds.get(&key) {
            return Some(labels.clone());
        }
        let resolved = match api_version {
            Some(api_version) => {
                let version = api_version.rsplit('/').next().unwrap_or(api_version);
                let gvk = GroupVersionKind::gvk(group, version, kind);
                match pinned_kind(&self.client, &gvk).await {
                    Ok(found) => Some(found),
                    Err(error) => {
                        tracing::warn!(api_version = %api_version, kind = %kind, %error, "cannot resolve the kind of an Event's object");
                        None
                    }
                }
            }
            None => {
                let discovery = self.discovery(false).await?;
                let found = discovery
                    .groups()
                    .filter(|g| g.name() == group)
                    .find_map(|g| g.recommended_kind(kind));
                found
            }
        };
        // NB: an unresolvable kind is remembered as empty, so a storm of its events does not
        // run discovery for each one.
        let labels = match resolved {
            Some((resource, capabilities)) => {
                let api: Api<PartialObjectMeta<DynamicObject>> =
                    match (&capabilities.scope, &self.namespace) {
                        (Scope::Namespaced, Some(ns)) => {
                            Api::namespaced_with(self.client.clone(), ns, &resource)
                        }
                        _ => Api::all_with(self.client.clone(), &resource),
                    };
                let (labels, task) = watch_labels(
                    watcher(api, watcher::Config::default()),
                    format!("{}/{}", resource.api_version, resource.kind),
                );
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.spawn(task);
                }
                tracing::info!(kind = %kind, group = %group, "watching object labels");
                labels
            }
            None => {
                let (_, ready) = watch::channel(true);
                Arc::new(KindLabels {
                    objects: RwLock::new(Objects::default()),
                    ready,
                })
            }
        };
        kinds.insert(key, labels.clone());
        Some(labels)
    }
}

/// The group serving `kind`: the core group first, then the others alphabetically.
fn resolve(discovery: &Discovery, kind: &str) -> Option<(String, String)> {
    let mut groups = discovery.groups_alphabetical();
    groups.sort_by_key(|g| !g.name().is_empty());
    groups.into_iter().find_map(|group| {
        group
            .recommended_kind(kind)
            .map(|(resource, _)| (resource.group, resource.version))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deleted_objects_keep_their_labels_for_late_events() {
        let (_, ready) = watch::channel(true);
        let cache = KindLabels {
            objects: RwLock::new(Objects::default()),
            ready,
        };
        let labels = Labels::from([("tier".to_string(), "critical".to_string())]);
        if let Ok(mut objects) = cache.objects.write() {
            objects
                .live
                .insert(key("prod", "api"), Packed::pack(&labels));
            objects.delete(key("prod", "api"));
        }
        assert_eq!(cache.lookup("prod", "api", false).await, Some(labels));
        assert_eq!(cache.lookup("prod", "web", false).await, None);
        // Keys of cluster-scoped objects (no namespace) do not meet namespaced ones.
        assert_eq!(cache.lookup("", "prod/api", false).await, None);
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn packed_labels_come_back_as_they_went_in() {
        for original in [
            labels(&[]),
            labels(&[("app", "api")]),
            labels(&[("", "")]),
            // Lengths, separators and digits inside keys and values are only text.
            labels(&[
                ("app.kubernetes.io/name", "12:34"),
                ("3:ab", ""),
                ("tier", "critical"),
                ("zone", "ü-é"),
            ]),
        ] {
            assert_eq!(Packed::pack(&original).unpack(), original);
        }
    }

    #[test]
    fn a_pods_labels_are_held_in_one_string_of_about_their_own_size() {
        let pod = labels(&[
            ("app", "checkout"),
            ("pod-template-hash", "7d9f8b6c5d"),
            ("tier", "critical"),
            ("app.kubernetes.io/part-of", "shop"),
        ]);
        let own: usize = pod.iter().map(|(k, v)| k.len() + v.len()).sum();
        let packed = Packed::pack(&pod);
        // Two length digits and a colon per key and per value.
        assert!(packed.0.len() <= own + 3 * 2 * pod.len(), "{}", packed.0);
    }
}
