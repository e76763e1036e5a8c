//! Test calls (`spec.test`): each chosen recipient is called once, all at once (paced by the
//! runner like any page), and the test is complete when every one of them pressed the key. The
//! strategy of the policy does not apply: a test checks phones, not the escalation.

use crate::api::{AlertCallSpec, AttemptStatus, CallPolicySpec, Completion, Mode, Order};
use crate::api::{AlertCallStatus, CallPolicyStatus, RecipientTest};

/// The policy a test call runs under: the recipients it names (all when it names none), called
/// simultaneously in one round until each pressed the key. `Err` names the recipients the policy
/// does not have. `None` for a page that is not a test.
pub fn policy_for(
    policy: &CallPolicySpec,
    call: &AlertCallSpec,
) -> Option<Result<CallPolicySpec, String>> {
    if !call.test {
        return None;
    }
    let unknown: Vec<&str> = call
        .test_recipients
        .iter()
        .filter(|name| !policy.recipients.iter().any(|r| &r.name == *name))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Some(Err(format!(
            "the policy has no recipient named {}",
            unknown.join(", ")
        )));
    }
    let mut tested = policy.clone();
    if !call.test_recipients.is_empty() {
        tested
            .recipients
            .retain(|r| call.test_recipients.contains(&r.name));
    }
    tested.strategy.mode = Mode::Simultaneous;
    tested.strategy.completion = Completion::AllAcked;
    tested.strategy.order = Order::Fixed;
    tested.strategy.rounds = 1;
    Some(Ok(tested))
}

/// What a finished test found for each recipient it was meant to call (`policy` is the
/// CallPolicy's own spec). A recipient the test never dialed (the cost limit, an unknown name)
/// did not pass, with `why` the test ended (the step's finish message) when known.
pub fn outcomes(
    policy: &CallPolicySpec,
    call: &AlertCallSpec,
    status: &AlertCallStatus,
    page: &str,
    why: Option<&str>,
) -> Vec<RecipientTest> {
    let chosen = policy
        .recipients
        .iter()
        .filter(|r| call.test_recipients.is_empty() || call.test_recipients.contains(&r.name));
    let finished = status.finished_at.clone();
    let not_called = match why {
        Some(why) => format!("not called: {why}"),
        None => format!("not called; the test ended in phase {:?}", status.phase),
    };
    chosen
        .map(|recipient| {
            let attempt = status
                .attempts
                .iter()
                .rev()
                .find(|a| a.recipient == recipient.name);
            let Some(attempt) = attempt else {
                return RecipientTest {
                    name: recipient.name.clone(),
                    last_test_time: finished.clone(),
                    message: Some(not_called.clone()),
                    alert_call: page.to_string(),
                    ..RecipientTest::default()
                };
            };
            let answered = attempt.acknowledged
                || (attempt.status == AttemptStatus::Completed
                    && !super::is_answered_by_machine(attempt));
            RecipientTest {
                name: recipient.name.clone(),
                last_test_time: attempt.ended_at.clone().or_else(|| finished.clone()),
                answered,
                acknowledged: attempt.acknowledged,
                twilio_error_code: attempt.twilio_error_code,
                passed: attempt.acknowledged,
                message: (!attempt.acknowledged).then(|| {
                    attempt.message.clone().unwrap_or_else(|| {
                        if answered {
                            "answered; no key pressed".into()
                        } else {
                            format!("not answered ({:?})", attempt.status)
                        }
                    })
                }),
                alert_call: page.to_string(),
            }
        })
        .collect()
}

/// The recipients' entries after a test: this test's outcomes replace the tested recipients'
/// entries, the others' stay, and names the policy no longer has are dropped. Also the
/// `passed/recipients` count for `status.tested`.
pub fn merge(
    policy: &CallPolicySpec,
    previous: &[RecipientTest],
    outcomes: &[RecipientTest],
) -> (Vec<RecipientTest>, String) {
    let merged: Vec<RecipientTest> = policy
        .recipients
        .iter()
        .filter_map(|r| {
            outcomes
                .iter()
                .chain(previous)
                .find(|t| t.name == r.name)
                .cloned()
        })
        .collect();
    let passed = merged.iter().filter(|t| t.passed).count();
    (merged, format!("{passed}/{}", policy.recipients.len()))
}

/// The test results recounted against the policy's recipients as they are now, when they no
/// longer agree: a recipient added since the last test has not passed, a removed one no longer
/// counts. `None` when they agree, or when no test ever ran.
pub fn recount(
    policy: &CallPolicySpec,
    status: &CallPolicyStatus,
) -> Option<(Vec<RecipientTest>, String)> {
    status.tested.as_ref()?;
    let (recipients, tested) = merge(policy, &status.recipients, &[]);
    let agrees = recipients == status.recipients && status.tested.as_deref() == Some(&tested);
    (!agrees).then_some((recipients, tested))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;
    use crate::escalation::{step, StepContext};
    use crate::fixtures::{self, AttemptExt};

    fn test_spec(recipients: &[&str]) -> AlertCallSpec {
        AlertCallSpec {
            test: true,
            test_recipients: recipients.iter().map(|r| r.to_string()).collect(),
            ..fixtures::alert_call_spec()
        }
    }

    fn dialed(decision: &crate::escalation::Decision) -> Vec<String> {
        decision
            .actions
            .iter()
            .filter_map(|a| match a {
                crate::escalation::Action::Dial { attempt, .. } => Some(attempt.id.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_test_calls_the_chosen_recipients_once_whatever_the_strategy() {
        let policy =
            fixtures::policy_with(Mode::Sequential, Completion::FirstAck, Order::RoundRobin);
        let everyone: Vec<String> = policy
            .recipients
            .iter()
            .map(|r| format!("r1-{}", r.name))
            .collect();
        let all = step(
            &policy,
            &test_spec(&[]),
            &AlertCallStatus::default(),
            fixtures::at(0),
            &StepContext::default(),
        );
        assert_eq!(dialed(&all), everyone, "everyone at once, in one round");
        let one = step(
            &policy,
            &test_spec(&["alice"]),
            &AlertCallStatus::default(),
            fixtures::at(0),
            &StepContext::default(),
        );
        assert_eq!(dialed(&one), vec!["r1-alice".to_string()]);
    }

    #[test]
    fn a_test_nobody_answered_ends_after_one_round_without_escalating() {
        let policy = fixtures::policy_spec();
        let call = test_spec(&["alice"]);
        let status =
            fixtures::status_with(vec![
                fixtures::attempt("r1-alice", AttemptStatus::NoAnswer).ended(30)
            ]);
        let d = step(
            &policy,
            &call,
            &status,
            fixtures::at(500),
            &StepContext::default(),
        );
        assert!(dialed(&d).is_empty(), "no second round");
        assert_eq!(d.status.phase, Phase::Exhausted);
    }

    #[test]
    fn an_unknown_recipient_fails_the_test_and_calls_nobody() {
        let d = step(
            &fixtures::policy_spec(),
            &test_spec(&["alice", "mallory"]),
            &AlertCallStatus::default(),
            fixtures::at(0),
            &StepContext::default(),
        );
        assert!(dialed(&d).is_empty());
        assert_eq!(d.status.phase, Phase::Failed);
        let said = d.actions.iter().any(|a| {
            matches!(a, crate::escalation::Action::Finish { reason: "UnknownRecipient", message, .. } if message.contains("mallory"))
        });
        assert!(said, "{:?}", d.actions);
    }

    #[test]
    fn a_test_call_is_held_by_the_hourly_cost_limit_like_a_page() {
        let mut policy = fixtures::policy_spec();
        policy.limits.max_calls_per_hour = 10;
        let ctx = StepContext {
            calls_last_hour: 10,
            ..StepContext::default()
        };
        let d = step(
            &policy,
            &test_spec(&["alice"]),
            &AlertCallStatus::default(),
            fixtures::at(0),
            &ctx,
        );
        assert!(dialed(&d).is_empty(), "the limit holds the test call");
        assert_eq!(d.status.phase, Phase::Failed);
        let why = d.actions.iter().find_map(|a| match a {
            crate::escalation::Action::Finish { message, .. } => Some(message.as_str()),
            _ => None,
        });
        let outcomes = outcomes(&policy, &test_spec(&["alice"]), &d.status, "t1", why);
        assert_eq!(outcomes.len(), 1);
        assert!(!outcomes[0].passed);
        let message = outcomes[0].message.clone().unwrap_or_default();
        assert!(message.contains("maxCallsPerHour"), "{message}");
    }

    #[test]
    fn outcomes_say_who_passed_and_merge_keeps_the_others() {
        let policy = fixtures::policy_spec();
        let call = test_spec(&[]);
        let mut pressed = fixtures::attempt("r1-alice", AttemptStatus::Completed).ended(20);
        pressed.acknowledged = true;
        let mut refused = fixtures::attempt("r1-bob", AttemptStatus::Failed).ended(1);
        refused.twilio_error_code = Some(21211);
        let mut status = fixtures::status_with(vec![pressed, refused]);
        status.phase = Phase::Exhausted;
        let found = outcomes(&policy, &call, &status, "t1", None);
        let alice = found
            .iter()
            .find(|t| t.name == "alice")
            .cloned()
            .unwrap_or_default();
        assert!(
            alice.passed && alice.answered && alice.acknowledged,
            "{alice:?}"
        );
        let bob = found
            .iter()
            .find(|t| t.name == "bob")
            .cloned()
            .unwrap_or_default();
        assert!(!bob.passed && !bob.answered, "{bob:?}");
        assert_eq!(bob.twilio_error_code, Some(21211));

        let older = vec![
            RecipientTest {
                name: "alice".into(),
                alert_call: "t0".into(),
                ..RecipientTest::default()
            },
            RecipientTest {
                name: "gone".into(),
                passed: true,
                ..RecipientTest::default()
            },
        ];
        let (merged, tested) = merge(&policy, &older, &found[..1]);
        assert_eq!(merged.len(), 1, "bob untested, gone dropped: {merged:?}");
        assert_eq!(merged[0].alert_call, "t1");
        assert_eq!(tested, format!("1/{}", policy.recipients.len()));
    }

    #[test]
    fn recipients_changed_since_the_last_test_are_recounted() {
        let mut policy = fixtures::policy_spec();
        policy.recipients.truncate(2);
        let passed = |name: &str| RecipientTest {
            name: name.into(),
            passed: true,
            ..RecipientTest::default()
        };
        let status = CallPolicyStatus {
            recipients: vec![passed("alice"), passed("bob")],
            tested: Some("2/2".into()),
            ..CallPolicyStatus::default()
        };
        assert_eq!(recount(&policy, &status), None, "nothing changed");
        assert_eq!(
            recount(&policy, &CallPolicyStatus::default()),
            None,
            "never tested: nothing to recount"
        );

        let mut added = policy.clone();
        added
            .recipients
            .push(fixtures::policy_spec().recipients[2].clone());
        assert_eq!(
            recount(&added, &status),
            Some((status.recipients.clone(), "2/3".to_string())),
            "a recipient added since has not passed"
        );

        let mut removed = policy.clone();
        removed.recipients.remove(1);
        assert_eq!(
            recount(&removed, &status),
            Some((vec![passed("alice")], "1/1".to_string())),
            "a removed recipient no longer counts"
        );
    }
}
