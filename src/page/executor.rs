//! Runs the actions of [`crate::escalation::step`] against Twilio and says what it found.
//!
//! Dials go to the [`Runner`] (paced per account); their outcomes arrive later and go to
//! [`Outcomes::record`]. Cancels, lookups of lost dials and polls go to Twilio at once; what they
//! find comes back in [`Executed`] for the caller to fold into the page's status. Where that
//! status lives (the AlertCall in Kubernetes, or memory in `alertcall demo`) is the caller's.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;

use super::calls;
use crate::api::{AlertCallStatus, CallPolicySpec};
use crate::escalation::{Action, Observation};
use crate::page::hooks::{HookPoint, Hooks};
use crate::page::runner::{DialJob, DialOutcome, JobKey, Limits, Runner};
use crate::twilio::Account;

/// Where the outcome of a dial goes. It arrives after the step that decided the dial is over,
/// so it is recorded on its own.
pub trait Outcomes: Clone + Send + Sync + 'static {
    /// Folds what a dial's outcome tells into the page's status.
    fn record(
        &self,
        attempt_id: String,
        observations: Vec<Observation>,
    ) -> impl Future<Output = ()> + Send;

    /// Every call SID an attempt already records, of any page on the account: a lookup never
    /// ties one of them to another attempt. The executor adds the page's own.
    fn claimed_sids(&self) -> BTreeSet<String>;
}

/// The URLs one call carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialUrls {
    /// Where the call's Gather posts the keypress.
    pub ack: String,
    /// Where Twilio reports the call's progress; without it the page is polled.
    pub status_callback: Option<String>,
}

/// What one page needs to act; built per step by its caller.
pub struct Executor<'a, O> {
    pub runner: &'a Arc<Runner>,
    pub account: &'a Arc<Account>,
    pub policy: &'a CallPolicySpec,
    /// The page's summary, spoken in every call.
    pub summary: &'a str,
    /// A page, or a test call (its own prompt, no room).
    pub purpose: super::documents::Purpose,
    pub namespace: &'a str,
    pub name: &'a str,
    pub limits: Limits,
    /// The URLs of a call, by attempt id.
    pub urls: &'a (dyn Fn(&str) -> DialUrls + Send + Sync),
    /// Test-only pause points (empty in production and in the demo).
    pub hooks: &'a Hooks,
    pub outcomes: O,
}

/// What running one step's actions found.
#[derive(Debug, Default, PartialEq)]
pub struct Executed {
    /// Observations from lookups, polls and dials refused before they were placed.
    pub found: Vec<Observation>,
    /// Calls that could not be ended (Twilio unreachable), as `SID: error`.
    pub unreachable: Vec<String>,
    /// When the step wants to be woken, if it said.
    pub wake: Option<Timestamp>,
}

impl<O: Outcomes> Executor<'_, O> {
    /// Runs `actions`, decided at `now` with `status` (the status they were decided into).
    pub async fn run(
        &self,
        actions: Vec<Action>,
        status: &AlertCallStatus,
        now: Timestamp,
    ) -> Executed {
        let mut executed = Executed::default();
        for action in actions {
            match action {
                Action::Dial { attempt, to } => {
                    self.hooks.point(HookPoint::AfterIntent).await;
                    let intent_at = attempt.intent_at.as_ref().map_or(now, |t| t.0);
                    if let Some(refused) = self.dial(attempt.id, to, intent_at) {
                        executed.found.push(refused);
                    }
                }
                Action::Cancel {
                    attempt_id,
                    call_sid,
                    hang_up,
                } => match call_sid {
                    // NB: repeated every step until the call is seen final.
                    Some(sid) => {
                        if let Err(error) =
                            calls::end_call(&self.account.client, &sid, hang_up).await
                        {
                            tracing::warn!(call_sid = %sid, %error, "ending a call");
                            executed.unreachable.push(format!("{sid}: {error}"));
                        }
                    }
                    None => {
                        self.runner.cancel(&self.key(attempt_id));
                    }
                },
                Action::LookUp {
                    attempt_id,
                    to,
                    intent_at,
                } => {
                    let mut claimed = self.outcomes.claimed_sids();
                    claimed.extend(status.attempts.iter().filter_map(|a| a.call_sid.clone()));
                    let intent_at = intent_at.unwrap_or(now);
                    executed
                        .found
                        .extend(self.look_up(attempt_id, &to, intent_at, &claimed).await);
                }
                Action::Poll {
                    attempt_id,
                    call_sid,
                } => match self.account.client.fetch_call(&call_sid).await {
                    Ok(fetched) => executed
                        .found
                        .extend(calls::update_of(&fetched, Some(attempt_id))),
                    Err(error) => tracing::warn!(%call_sid, %error, "polling a call"),
                },
                Action::Acknowledged { by, .. } => {
                    tracing::info!(acknowledged_by = %by, "page acknowledged");
                }
                Action::Finish {
                    phase,
                    reason,
                    message,
                } => tracing::info!(?phase, reason, %message, "page finished"),
                Action::WakeAt(at) => executed.wake = Some(at),
            }
        }
        executed
    }

    fn key(&self, attempt_id: String) -> JobKey {
        JobKey {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            attempt_id,
        }
    }

    /// Hands a dial to the runner. A dial whose request cannot be built is refused at once.
    fn dial(&self, attempt_id: String, to: String, intent_at: Timestamp) -> Option<Observation> {
        let urls = (self.urls)(&attempt_id);
        let request = match calls::dial_request(
            self.purpose,
            self.policy,
            self.summary,
            to.clone(),
            &urls.ack,
            urls.status_callback,
        ) {
            Ok(request) => request,
            Err(error) => {
                let message = format!("the call's TwiML cannot be built: {error}");
                tracing::warn!(attempt = %attempt_id, %message, "Twilio refused the call");
                return Some(Observation::DialRefused {
                    attempt_id,
                    error_code: None,
                    message,
                });
            }
        };
        let lookup = LookUpArgs {
            account: self.account.clone(),
            from: self.policy.twilio.from.clone(),
            to,
            intent_at,
        };
        let key = self.key(attempt_id);
        let report_key = key.clone();
        let outcomes = self.outcomes.clone();
        let hooks = self.hooks.clone();
        self.runner.submit(DialJob {
            key,
            account: self.account.clone(),
            limits: self.limits,
            request,
            report: Box::new(move |outcome| {
                Box::pin(async move {
                    report(&outcomes, &hooks, &report_key, lookup, outcome).await;
                })
            }),
        });
        None
    }

    /// Finds the call of an intent whose dial was lost (the process stopped, or Twilio's answer
    /// never came). Nothing found: the intent is lost and the attempt is dialed again.
    async fn look_up(
        &self,
        attempt_id: String,
        to: &str,
        intent_at: Timestamp,
        claimed: &BTreeSet<String>,
    ) -> Vec<Observation> {
        let from = &self.policy.twilio.from;
        match calls::look_up(&self.account.client, from, to, intent_at, claimed).await {
            Ok(Some(found)) => {
                tracing::info!(attempt = %attempt_id, call_sid = %found.sid, "lost dial found at Twilio");
                let mut observations = vec![Observation::DialAccepted {
                    attempt_id: attempt_id.clone(),
                    call_sid: found.sid.clone(),
                    at: None,
                }];
                observations.extend(calls::update_of(&found, Some(attempt_id)));
                observations
            }
            Ok(None) => {
                tracing::warn!(attempt = %attempt_id, "no call found at Twilio for the intent; dialing again");
                vec![Observation::IntentLost {
                    attempt_id,
                    reason: format!(
                        "no call to {to} found at Twilio after the intent; dialed again"
                    ),
                }]
            }
            Err(error) => {
                tracing::warn!(attempt = %attempt_id, %error, "looking up a lost dial");
                Vec::new()
            }
        }
    }
}

/// What an ambiguous dial needs to find its call.
struct LookUpArgs {
    account: Arc<Account>,
    from: String,
    to: String,
    intent_at: Timestamp,
}

/// Records a dial's outcome. An ambiguous one is looked up at once: found, it is recorded; not
/// found, the call may still appear, so the step looks again once the intent is past its grace
/// period ([`Action::LookUp`]). It is never dialed again from here.
async fn report<O: Outcomes>(
    outcomes: &O,
    hooks: &Hooks,
    key: &JobKey,
    lookup: LookUpArgs,
    outcome: DialOutcome,
) {
    let attempt_id = key.attempt_id.clone();
    match &outcome {
        DialOutcome::Accepted(placed) => {
            tracing::info!(alertcall = %format!("{}/{}", key.namespace, key.name), attempt = %attempt_id, call_sid = %placed.sid, "call placed");
            hooks.point(HookPoint::AfterAccepted).await;
        }
        DialOutcome::Refused { message, .. } => {
            tracing::warn!(attempt = %attempt_id, %message, "Twilio refused the call");
        }
        DialOutcome::Ambiguous(message) => {
            tracing::warn!(attempt = %attempt_id, %message, "dial outcome unknown; looking the call up");
        }
        DialOutcome::NotPlaced => {}
    }
    let observations = match calls::outcome_observations(&attempt_id, &outcome) {
        Some(observations) => observations,
        None => {
            let claimed = outcomes.claimed_sids();
            match calls::look_up(
                &lookup.account.client,
                &lookup.from,
                &lookup.to,
                lookup.intent_at,
                &claimed,
            )
            .await
            {
                Ok(Some(found)) => vec![Observation::DialAccepted {
                    attempt_id: attempt_id.clone(),
                    call_sid: found.sid.clone(),
                    at: None,
                }],
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(attempt = %attempt_id, %error, "looking up an ambiguous dial");
                    return;
                }
            }
        }
    };
    outcomes.record(attempt_id, observations).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use jiff::SignedDuration;

    use super::*;
    use crate::metrics::Metrics;
    use crate::twilio::{Credentials, TwilioClient, TwilioConfig};
    use twilio_sim::{SimConfig, Simulator};

    const AC: &str = "ACexec0000000000000000000000000000";
    const TOKEN: &str = "exec-token";

    /// Dial outcomes as recorded: attempt id and observations.
    type Recorded = Vec<(String, Vec<Observation>)>;

    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Recorded>>);

    impl Outcomes for Kept {
        async fn record(&self, attempt_id: String, observations: Vec<Observation>) {
            if let Ok(mut kept) = self.0.lock() {
                kept.push((attempt_id, observations));
            }
        }

        fn claimed_sids(&self) -> BTreeSet<String> {
            BTreeSet::new()
        }
    }

    #[tokio::test]
    async fn lookups_that_find_nothing_lose_the_intent_and_the_wake_time_is_returned() {
        let sim = match Simulator::start(SimConfig::new(AC, TOKEN)).await {
            Ok(sim) => sim,
            Err(error) => panic!("simulator: {error}"),
        };
        let client = url::Url::parse(&sim.api_url())
            .map_err(|error| error.to_string())
            .and_then(|base| {
                TwilioClient::new(
                    TwilioConfig::new(Credentials::AuthToken {
                        account_sid: AC.to_string(),
                        auth_token: TOKEN.to_string(),
                    })
                    .with_single_base(base),
                )
                .map_err(|error| error.to_string())
            })
            .unwrap_or_else(|error| panic!("client: {error}"));
        let account = Arc::new(Account {
            account_sid: AC.to_string(),
            auth_token: Some(TOKEN.to_string()),
            client,
        });
        let runner = Arc::new(Runner::new(Arc::new(Metrics::new())));
        let policy = crate::fixtures::policy_spec();
        let urls = |_: &str| DialUrls {
            ack: "https://example.test/ack".to_string(),
            status_callback: None,
        };
        let hooks = Hooks::default();
        let outcomes = Kept::default();
        let executor = Executor {
            runner: &runner,
            account: &account,
            policy: &policy,
            summary: "disk full",
            purpose: super::super::documents::Purpose::Page,
            namespace: "ns",
            name: "page",
            limits: calls::limits(&policy),
            urls: &urls,
            hooks: &hooks,
            outcomes: outcomes.clone(),
        };
        let now = sim.now();
        let wake = now + SignedDuration::from_secs(30);
        let executed = executor
            .run(
                vec![
                    Action::LookUp {
                        attempt_id: "r1-alice".into(),
                        to: "+15005550101".into(),
                        intent_at: Some(now),
                    },
                    // An intent nobody is dialing: nothing to end at Twilio.
                    Action::Cancel {
                        attempt_id: "r1-bob".into(),
                        call_sid: None,
                        hang_up: false,
                    },
                    Action::WakeAt(wake),
                ],
                &AlertCallStatus::default(),
                now,
            )
            .await;
        sim.shutdown().await;
        let recorded = outcomes.0.lock().map(|r| r.len()).unwrap_or_default();
        assert_eq!(recorded, 0, "no dial, so no dial outcome");
        assert_eq!(executed.wake, Some(wake));
        assert!(executed.unreachable.is_empty(), "{executed:?}");
        assert!(
            matches!(
                executed.found.as_slice(),
                [Observation::IntentLost { attempt_id, .. }] if attempt_id == "r1-alice"
            ),
            "{executed:?}"
        );
    }
}
