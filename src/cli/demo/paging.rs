//! The operator's loop for one page with the AlertCall status in memory: poll, read the
//! keypress ledger, observe, step, and the shared executor for the actions.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::SignedDuration;
use kube::ResourceExt;
use tokio::sync::mpsc;

use super::super::check::namespace_of;
use super::{DemoError, Moment, Staged, ACCOUNT_SID, AUTH_TOKEN, POLL_SECONDS, REAL_TIME_LIMIT};
use crate::api::{AlertCall, AlertCallStatus, CallPolicy, CallPolicySpec, OnCallSchedule};
use crate::escalation::{observe, step, Action, Observation, OnCall, StepContext};
use crate::metrics::Metrics;
use crate::page::documents::{self, room_name};
use crate::page::hooks::Hooks;
use crate::page::ledger::{self, Ledger};
use crate::page::runner::Runner;
use crate::page::{calls, DialUrls, Executor, Outcomes};
use crate::schedule::members_on_call;
use crate::twilio::sim::SimHandle;
use crate::twilio::Account;

use super::cast::{role_call, Role};
use super::narration::{note_transitions, who};

/// What paging did: the final status and the demo's own notes about it.
pub(super) struct Paged {
    pub(super) status: AlertCallStatus,
    pub(super) notes: Vec<Moment>,
    pub(super) cast_of_attempt: HashMap<String, &'static str>,
}

/// Dial outcomes come back over a channel into the loop that holds the status; an ambiguous
/// dial's lookup skips the SIDs that status records.
#[derive(Clone)]
struct InMemory {
    tx: mpsc::UnboundedSender<Vec<Observation>>,
    claimed: Arc<Mutex<BTreeSet<String>>>,
}

impl Outcomes for InMemory {
    async fn record(&self, _attempt_id: String, observations: Vec<Observation>) {
        // NB: the loop is gone only once the page is over; nothing is left to record then.
        let _ = self.tx.send(observations);
    }

    fn claimed_sids(&self) -> BTreeSet<String> {
        self.claimed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The operator's loop for one page, with the status in memory: poll, observe, step, and the
/// shared [`Executor`] for the actions.
pub(super) async fn run_page(
    sim: &SimHandle,
    staged: &Staged,
    policy: &CallPolicy,
    call: &AlertCall,
    roles: &[Role],
    schedules: &[OnCallSchedule],
    time_scale: f64,
) -> Result<Paged, DemoError> {
    let Staged { client, twiml } = staged;
    let ack_base = twiml.urls.ack.as_str();
    let spec = &policy.spec;
    let namespace = namespace_of(policy);
    let page = call.name_any();
    let room = room_name(spec, &namespace, &policy.name_any());
    let metrics = Arc::new(Metrics::new());
    let runner = Arc::new(Runner::new(metrics));
    let account = Arc::new(Account {
        account_sid: ACCOUNT_SID.to_string(),
        auth_token: Some(AUTH_TOKEN.to_string()),
        client: client.clone(),
    });
    // NB: the pacer counts real time; scaled, its calls per second are per simulated second.
    let mut limits = calls::limits(spec);
    limits.calls_per_second = scaled_rate(limits.calls_per_second, time_scale);
    // Keypresses go to the acknowledgement Function, as in the operator; no status callback:
    // the demo polls, and reads the keypress ledger as the operator does.
    let urls = |attempt_id: &str| DialUrls {
        ack: documents::ack_action_url(&twiml.urls.ack_function, spec, &room, attempt_id)
            .unwrap_or_else(|_| ack_base.to_string()),
        status_callback: None,
    };
    let ledger = Ledger::new(Duration::from_secs_f64(POLL_SECONDS / time_scale));
    let hooks = Hooks::default();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Observation>>();
    let outcomes = InMemory {
        tx,
        claimed: Arc::new(Mutex::new(BTreeSet::new())),
    };
    let executor = Executor {
        runner: &runner,
        account: &account,
        policy: spec,
        summary: &call.spec.summary,
        purpose: crate::page::documents::Purpose::Page,
        namespace: &namespace,
        name: &page,
        limits,
        urls: &urls,
        hooks: &hooks,
        outcomes: outcomes.clone(),
    };

    let mut status = AlertCallStatus::default();
    let mut notes: Vec<Moment> = Vec::new();
    let mut found: Vec<Observation> = Vec::new();
    let mut calls_of: HashMap<String, usize> = HashMap::new();
    let mut cast_of_attempt: HashMap<String, &'static str> = HashMap::new();
    let real_start = tokio::time::Instant::now();
    loop {
        let now = sim.now();
        while let Ok(observations) = rx.try_recv() {
            found.extend(observations);
        }
        for observation in found.drain(..) {
            observe(&mut status, &observation, now);
        }
        for observation in calls::poll(client, &status, &room, ack_base, now)
            .await
            .observations
        {
            observe(&mut status, &observation, now);
        }
        // NB: call Events come 15 minutes late at Twilio (and at the simulator): the keypress
        // is known from the ledger the Function writes, and an answered call that ended
        // unacknowledged holds the page until a read after its end agrees.
        let settling = ledger::settling(&status, now);
        if ledger::wanted(&status) {
            match ledger.keypresses(&account, now, settling).await {
                Ok(keypresses) => {
                    for observation in ledger::observations(&status, &keypresses) {
                        observe(&mut status, &observation, now);
                    }
                }
                Err(error) => tracing::warn!(%error, "reading the acknowledgement ledger"),
            }
        }
        if ledger::settling(&status, now).is_some() {
            tokio::time::sleep(Duration::from_secs_f64(POLL_SECONDS / time_scale / 4.0)).await;
            continue;
        }
        let dialing = runner.dialing(&namespace, &page);
        let step_ctx = StepContext {
            start_index: 0,
            calls_last_hour: u32::try_from(status.attempts.len()).unwrap_or(u32::MAX),
            withdrawn: None,
            dialing: dialing.clone(),
            conference_room: Some(room.clone()),
            on_call: on_call(spec, schedules, &namespace, now),
        };
        let decision = step(spec, &call.spec, &status, now, &step_ctx);
        note_transitions(&mut notes, &status, &decision.status, now);
        status = decision.status;
        *outcomes
            .claimed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = status
            .attempts
            .iter()
            .filter_map(|a| a.call_sid.clone())
            .collect();

        let live: HashSet<String> = status
            .attempts
            .iter()
            .filter(|a| !a.status.is_final() && a.call_sid.is_some())
            .map(|a| a.id.clone())
            .collect();
        runner.sync_live(ACCOUNT_SID, &namespace, &page, &live);

        // The cast plays each dial before it is placed.
        for action in &decision.actions {
            let Action::Dial { attempt, to } = action else {
                continue;
            };
            // A schedule's member plays their own part, whichever recipient reached them.
            let person = attempt.member.as_ref().unwrap_or(&attempt.recipient);
            let nth = calls_of.entry(person.clone()).or_default();
            if let Some((behaviour, what)) = role_call(roles, person, *nth) {
                sim.set_recipient(to, behaviour.clone());
                cast_of_attempt.insert(attempt.id.clone(), what);
            }
            *nth += 1;
            notes.push(Moment {
                at: now,
                text: match &attempt.schedule {
                    Some(schedule) => format!(
                        "dial {} ({to}, on call in {schedule}) round {}",
                        who(attempt),
                        attempt.round
                    ),
                    None => format!("dial {} ({to}) round {}", who(attempt), attempt.round),
                },
            });
        }
        let executed = executor.run(decision.actions, &status, now).await;
        found.extend(executed.found);
        let poll_at = now + SignedDuration::from_secs_f64(POLL_SECONDS);
        let wake = executed.wake.map_or(poll_at, |at| at.min(poll_at));

        let settled = status
            .attempts
            .iter()
            .all(|a| a.status.is_final() || a.acknowledged);
        if status.phase.is_terminal() && settled && dialing.is_empty() && found.is_empty() {
            break;
        }
        if real_start.elapsed() > REAL_TIME_LIMIT {
            runner.abort_all();
            return Err(DemoError::Stuck(REAL_TIME_LIMIT));
        }
        let sim_wait = wake.duration_since(sim.now()).as_secs_f64().max(0.0);
        let real_wait = (sim_wait / time_scale).clamp(0.005, POLL_SECONDS / time_scale);
        tokio::time::sleep(Duration::from_secs_f64(real_wait)).await;
    }
    runner.abort_all();
    Ok(Paged {
        status,
        notes,
        cast_of_attempt,
    })
}

/// Who is on call at `now` in each schedule `policy` names, from the schedules of its
/// namespace among `schedules`: what the AlertCall controller reads from the API server.
fn on_call(
    policy: &CallPolicySpec,
    schedules: &[OnCallSchedule],
    namespace: &str,
    now: jiff::Timestamp,
) -> OnCall {
    policy
        .recipients
        .iter()
        .filter_map(|r| r.address.schedule())
        .map(|name| {
            let found = schedules
                .iter()
                .find(|s| s.name_any() == name && namespace_of(*s) == namespace);
            let members = match found {
                Some(schedule) => members_on_call(&schedule.spec, name, now),
                None => Err(format!("OnCallSchedule {name} not found in {namespace}")),
            };
            (name.to_string(), members)
        })
        .collect()
}

fn scaled_rate(per_second: u32, time_scale: f64) -> u32 {
    let scaled = (f64::from(per_second.max(1)) * time_scale).round();
    if scaled >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // NB: in range and integral after the check and round above.
        (scaled as u32).max(1)
    }
}
