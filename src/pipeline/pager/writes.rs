//! The pager's writes and their answers: AlertCall creates, resolves and counters as jobs off the
//! decision loop, and the webhook replies that wait for them to be durable.

use super::*;

impl PagerTask {
    pub(super) fn open_reply(&mut self, tx: oneshot::Sender<PageOutcome>) -> ReplyId {
        let id = self.next_reply;
        self.next_reply = self.next_reply.wrapping_add(1);
        self.replies.insert(
            id,
            PendingReply {
                tx,
                open: 1,
                failure: None,
            },
        );
        id
    }

    /// One more decision the signal's reply waits for.
    pub(super) fn hold_reply(&mut self, id: Option<ReplyId>) {
        if let Some(pending) = id.and_then(|id| self.replies.get_mut(&id)) {
            pending.open += 1;
        }
    }

    /// One decision of the signal is settled (`failure`: not durable); the last one answers.
    pub(super) fn release_reply(&mut self, id: Option<ReplyId>, failure: Option<String>) {
        let Some(id) = id else {
            return;
        };
        let Some(pending) = self.replies.get_mut(&id) else {
            return;
        };
        if pending.failure.is_none() {
            pending.failure = failure;
        }
        pending.open = pending.open.saturating_sub(1);
        if pending.open > 0 {
            return;
        }
        if let Some(done) = self.replies.remove(&id) {
            let outcome = match done.failure {
                None => PageOutcome::Settled,
                Some(error) => PageOutcome::Failed(error),
            };
            // The webhook may have stopped waiting (its own deadline): nobody to tell.
            let _ = done.tx.send(outcome);
        }
    }

    /// Writes a resolve on the group's newest page (`spec.source.resolvedAt`), so it outlives
    /// this process: a restarted pager reopens the repeat window from it, and the AlertCall
    /// controller cancels that page if it is still waiting out its group wait.
    pub(super) fn record_resolve(
        &mut self,
        route: &RouteKey,
        key: &GroupKey,
        at: Timestamp,
        reply: Option<ReplyId>,
    ) {
        let id: GroupId = (route.namespace.clone(), group_hash(route, key));
        let Some(page) = self.pages.latest(&id) else {
            return;
        };
        // NB: a resolve from before the page neither reopens its window nor may cancel it.
        if at < page.created || page.resolved_at.is_some_and(|known| known >= at) {
            return;
        }
        let page = (route.namespace.clone(), page.name.clone());
        if let Some(record) = self.pages.find_mut(&page) {
            record.resolved_at = Some(at);
        }
        if let Some(waiting) = self.in_flight.get_mut(&page) {
            // Written once the create lands (see on_done); the reply waits for that.
            waiting.extend(reply);
            self.hold_reply(reply);
            return;
        }
        self.hold_reply(reply);
        self.patch_resolved(page, at, reply.into_iter().collect());
    }

    pub(super) fn patch_resolved(
        &mut self,
        page: (String, String),
        at: Timestamp,
        replies: Vec<ReplyId>,
    ) {
        let mut source =
            serde_json::Map::from_iter([("resolvedAt".to_string(), json!(at.to_string()))]);
        // NB: a firing signal of the group counted but not yet flushed goes in the same write:
        // the AlertCall controller ends a page whose resolvedAt is not older than its lastSeen,
        // and must not see the resolve without the firing that came before it.
        let unflushed = self
            .counters
            .get(&page)
            .and_then(|pending| pending.last_seen);
        if let Some(record) = self.pages.find_mut(&page) {
            if let Some(seen) = unflushed.filter(|seen| record.last_seen < Some(*seen)) {
                record.last_seen = Some(seen);
                source.insert("lastSeen".into(), json!(seen.to_string()));
            }
        }
        let api: Api<AlertCall> = Api::namespaced(self.shared.client.clone(), &page.0);
        let patch = json!({ "spec": { "source": source } });
        self.jobs.spawn(async move {
            let result = api
                .patch(&page.1, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            Done::Resolved {
                page,
                replies,
                result,
            }
        });
    }

    pub(super) fn on_done(&mut self, done: Done) {
        match done {
            Done::Created {
                namespace,
                id,
                group,
                candidate,
                name,
                result,
            } => {
                let page = (namespace.clone(), name.clone());
                let waiting = self.in_flight.remove(&page).unwrap_or_default();
                let failure = match &result {
                    Ok(_) => None,
                    Err(kube::Error::Api(status)) if status.code == 409 => None,
                    Err(error) => Some(format!(
                        "cannot create AlertCall {namespace}/{name}: {error}"
                    )),
                };
                // A resolve that came while the create was in flight is written now.
                let resolved = self.pages.find_mut(&page).and_then(|r| r.resolved_at);
                let written = match &result {
                    Ok(call) => call.spec.source.resolved_at.as_ref().map(|t| t.0),
                    Err(_) => None,
                };
                self.on_created(namespace, id, group, candidate, name, result);
                match resolved {
                    Some(at) if failure.is_none() && written < Some(at) => {
                        self.patch_resolved(page, at, waiting);
                    }
                    _ => {
                        for reply in waiting {
                            self.release_reply(Some(reply), failure.clone());
                        }
                    }
                }
            }
            Done::Patched {
                page,
                pending,
                result,
            } => self.on_patched(page, pending, result),
            Done::Resolved {
                page,
                replies,
                result,
            } => {
                let failure = match result {
                    Ok(call) => {
                        if let Some((id, record)) = record_of(&call) {
                            self.pages.upsert(id, record);
                        }
                        None
                    }
                    // Deleted meanwhile: nothing left to cancel, and this process remembers.
                    Err(kube::Error::Api(status)) if status.code == 404 => None,
                    Err(error) => {
                        tracing::warn!(alertcall = %format!("{}/{}", page.0, page.1), %error, "recording a resolve");
                        Some(format!(
                            "cannot record the resolve on AlertCall {}/{}: {error}",
                            page.0, page.1
                        ))
                    }
                };
                for reply in replies {
                    self.release_reply(Some(reply), failure.clone());
                }
            }
        }
    }

    pub(super) fn on_created(
        &mut self,
        namespace: String,
        id: GroupId,
        group: (RouteKey, GroupKey),
        candidate: Box<Candidate>,
        name: String,
        result: Result<AlertCall, kube::Error>,
    ) {
        match result {
            Ok(call) => {
                tracing::info!(alertcall = %format!("{namespace}/{name}"), route = %group.0, group = %group.1, "paged");
                self.shared
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
                tracing::debug!(alertcall = %format!("{namespace}/{name}"), "page exists already");
            }
            Err(error) => {
                tracing::error!(alertcall = %format!("{namespace}/{name}"), %error, "cannot create the AlertCall; retrying");
                self.shared.metrics.reconcile_error("pager", "CreateFailed");
                self.pages.remove(&id, &name);
                let at = Timestamp::now()
                    .saturating_add(CREATE_RETRY)
                    .unwrap_or_else(|_| Timestamp::now());
                self.held.insert(group.clone(), *candidate);
                self.waiting.entry(at).or_default().push(group);
            }
        }
    }

    pub(super) fn on_patched(
        &mut self,
        page: (String, String),
        pending: PendingCounter,
        result: Result<AlertCall, kube::Error>,
    ) {
        match result {
            Ok(call) => {
                if let Some((id, record)) = record_of(&call) {
                    self.pages.upsert(id, record);
                }
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                tracing::warn!(alertcall = %format!("{}/{}", page.0, page.1), %error, "updating page counters");
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
        }
    }

    pub(super) fn flush_counters(&mut self) {
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
            let api: Api<AlertCall> = Api::namespaced(self.shared.client.clone(), &page.0);
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
