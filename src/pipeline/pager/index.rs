//! What the pager knows of existing pages: per route and group, the pages (newest last) with
//! their counters and the group's last resolve, rebuilt from the AlertCall watch after a restart.

use super::*;

/// One existing page of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRecord {
    pub name: String,
    pub created: Timestamp,
    pub last_seen: Option<Timestamp>,
    pub count: Option<i64>,
    /// `spec.source.resolvedAt`: the group was resolved after this page was made.
    pub resolved_at: Option<Timestamp>,
}

impl PageRecord {
    /// Counters only grow: a watch event older than our own write must not shrink them.
    pub(super) fn merge(&mut self, newer: PageRecord) {
        self.created = newer.created;
        self.last_seen = self.last_seen.max(newer.last_seen);
        self.resolved_at = self.resolved_at.max(newer.resolved_at);
        self.count = match (self.count, newer.count) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

pub(super) type GroupId = (String, String);

/// The pages of every group, from the AlertCalls carrying the group-hash label.
#[derive(Debug, Default)]
pub struct PageIndex {
    groups: HashMap<GroupId, Vec<PageRecord>>,
    buffer: HashMap<GroupId, Vec<PageRecord>>,
}

pub(super) fn record_of(call: &AlertCall) -> Option<(GroupId, PageRecord)> {
    let hash = call.labels().get(LABEL_GROUP_HASH)?.clone();
    let created = call.metadata.creation_timestamp.as_ref()?.0;
    Some((
        (call.namespace().unwrap_or_default(), hash),
        PageRecord {
            name: call.name_any(),
            created,
            last_seen: call.spec.source.last_seen.as_ref().map(|t| t.0),
            count: call.spec.source.count,
            resolved_at: call.spec.source.resolved_at.as_ref().map(|t| t.0),
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
    #[cfg(test)]
    pub(super) fn all(&self) -> impl Iterator<Item = &PageRecord> {
        self.groups.values().flatten()
    }

    /// Pages held over all groups.
    #[cfg(test)]
    pub(super) fn page_count(&self) -> usize {
        self.groups.values().map(Vec::len).sum()
    }

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

    /// When the group was last resolved, as recorded on its pages: what a restarted pager knows
    /// of resolves it did not see itself.
    pub fn resolved_at(&self, id: &GroupId) -> Option<Timestamp> {
        self.groups
            .get(id)?
            .iter()
            .filter_map(|r| r.resolved_at)
            .max()
    }

    pub(super) fn find_mut(
        &mut self,
        name_namespace: &(String, String),
    ) -> Option<&mut PageRecord> {
        let (namespace, name) = name_namespace;
        self.groups
            .iter_mut()
            .filter(|((ns, _), _)| ns == namespace)
            .flat_map(|(_, records)| records.iter_mut())
            .find(|r| &r.name == name)
    }

    pub(super) fn on_event(&mut self, event: watcher::Event<DeserializeGuard<AlertCall>>) -> bool {
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

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn the_index_rebuilds_resolves_from_listed_alert_calls() {
        let call = |name: &str, created: i64, resolved: Option<i64>| {
            let mut spec = crate::fixtures::alert_call_spec();
            spec.source.resolved_at = resolved.map(|t| Time(crate::fixtures::at(t)));
            let mut call = AlertCall::new(name, spec);
            call.metadata.namespace = Some("prod".into());
            call.metadata.creation_timestamp = Some(Time(crate::fixtures::at(created)));
            call.metadata.labels = Some(BTreeMap::from([(
                LABEL_GROUP_HASH.to_string(),
                "abc".to_string(),
            )]));
            DeserializeGuard(Ok(call))
        };
        let id = ("prod".to_string(), "abc".to_string());
        let mut index = PageIndex::default();
        assert!(!index.on_event(watcher::Event::Init));
        index.on_event(watcher::Event::InitApply(call("a", 100, Some(150))));
        index.on_event(watcher::Event::InitApply(call("b", 200, None)));
        assert_eq!(index.resolved_at(&id), None, "only complete lists count");
        assert!(index.on_event(watcher::Event::InitDone));
        assert_eq!(index.resolved_at(&id), Some(crate::fixtures::at(150)));
        assert_eq!(index.latest(&id).map(|r| r.name.as_str()), Some("b"));
        // A later resolve written on the newest page, seen through the watch.
        index.on_event(watcher::Event::Apply(call("b", 200, Some(250))));
        assert_eq!(index.resolved_at(&id), Some(crate::fixtures::at(250)));
        // A stale event does not take a recorded resolve back.
        index.on_event(watcher::Event::Apply(call("b", 200, None)));
        assert_eq!(index.resolved_at(&id), Some(crate::fixtures::at(250)));
    }

    fn record(name: &str, created: i64, count: Option<i64>) -> PageRecord {
        PageRecord {
            name: name.into(),
            created: crate::fixtures::at(created),
            last_seen: Some(crate::fixtures::at(created)),
            count,
            resolved_at: None,
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
