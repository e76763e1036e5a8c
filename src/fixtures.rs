//! Builders for test objects, shared by the unit tests of every module.

use crate::api::*;

/// A sequential three-person policy with the defaults of the CRD.
pub fn policy_spec() -> CallPolicySpec {
    CallPolicySpec {
        twilio: TwilioSpec {
            credentials_secret_ref: LocalRef {
                name: "twilio".into(),
            },
            from: "+15005550006".into(),
            bridge_number: None,
        },
        recipients: vec![
            Recipient {
                name: "alice".into(),
                address: Address::Phone("+15005550101".into()),
            },
            Recipient {
                name: "bob".into(),
                address: Address::Client("bob".into()),
            },
            Recipient {
                name: "carol".into(),
                address: Address::Sip("sip:carol@example.com".into()),
            },
        ],
        strategy: StrategySpec::default(),
        acknowledgement: AcknowledgementSpec::default(),
        message: MessageSpec::default(),
        conference: ConferenceSpec::default(),
        limits: LimitsSpec::default(),
        quiet_hours: Vec::new(),
        on_exhausted: None,
    }
}

/// A route on Warning events about Pods.
pub fn route_spec() -> AlertRouteSpec {
    AlertRouteSpec {
        policy_ref: LocalRef {
            name: "oncall".into(),
        },
        kubernetes_events: Some(KubernetesEventsSpec {
            types: vec![EventType::Warning],
            reasons: vec!["BackOff".into()],
            involved_kinds: vec!["Pod".into()],
            min_count: 1,
            ..Default::default()
        }),
        alertmanager: None,
        grouping: GroupingSpec::default(),
        message: None,
        suspend: false,
        active_time_intervals: Vec::new(),
        mute_time_intervals: Vec::new(),
        urgent: false,
        heartbeat: None,
        on_resolved: OnResolved::Cancel,
    }
}

/// A page of the `oncall` policy with a short summary.
pub fn alert_call_spec() -> AlertCallSpec {
    AlertCallSpec {
        policy_ref: LocalRef {
            name: "oncall".into(),
        },
        route_ref: None,
        group_key: "prod/Pod/api-7f9/BackOff".into(),
        summary: "BackOff on Pod prod/api-7f9".into(),
        source: SourceSpec::default(),
        acknowledged: false,
        not_before: None,
        on_resolved: OnResolved::Continue,
        test: false,
        test_recipients: Vec::new(),
    }
}

/// `policy_spec()` with another strategy.
pub fn policy_with(mode: Mode, completion: Completion, order: Order) -> CallPolicySpec {
    let mut policy = policy_spec();
    policy.strategy.mode = mode;
    policy.strategy.completion = completion;
    policy.strategy.order = order;
    policy
}

/// A Kubernetes client whose every request fails (a port on loopback that refuses): a test
/// using it proves that what it checks needed no API call.
pub fn unreachable_client() -> kube::Client {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap_or_default());
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("client: {e}"))
}

/// A timestamp `second`s after the epoch.
pub fn at(second: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(second).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn time(second: i64) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(second))
}

/// An attempt `r{round}-{recipient}` in `status`, intent recorded at 0.
pub fn attempt(id: &str, status: AttemptStatus) -> Attempt {
    let (round, recipient) = id
        .strip_prefix('r')
        .and_then(|rest| rest.split_once('-'))
        .map(|(round, name)| (round.parse().unwrap_or(1), name.to_string()))
        .unwrap_or((1, id.to_string()));
    Attempt {
        id: id.into(),
        recipient,
        round,
        intent_at: Some(time(0)),
        status,
        ..Attempt::default()
    }
}

/// Small setters for attempts in tables.
pub trait AttemptExt {
    fn sid(self, sid: &str) -> Self;
    fn acked(self) -> Self;
    fn ended(self, second: i64) -> Self;
    fn started(self, second: i64) -> Self;
    fn intent(self, second: i64) -> Self;
    fn answered_by(self, by: &str) -> Self;
}

impl AttemptExt for Attempt {
    fn sid(mut self, sid: &str) -> Self {
        self.call_sid = Some(sid.into());
        self
    }
    fn acked(mut self) -> Self {
        self.acknowledged = true;
        self
    }
    fn ended(mut self, second: i64) -> Self {
        self.ended_at = Some(time(second));
        self
    }
    fn started(mut self, second: i64) -> Self {
        self.started_at = Some(time(second));
        self
    }
    fn intent(mut self, second: i64) -> Self {
        self.intent_at = Some(time(second));
        self
    }
    fn answered_by(mut self, by: &str) -> Self {
        self.answered_by = Some(by.into());
        self
    }
}

/// A page in phase Calling holding `attempts`, in the round of the last one.
pub fn status_with(attempts: Vec<Attempt>) -> AlertCallStatus {
    AlertCallStatus {
        phase: Phase::Calling,
        round: attempts.iter().map(|a| a.round).max().unwrap_or(1),
        started_at: Some(time(0)),
        attempt_count: attempts.len() as u32,
        attempts,
        ..AlertCallStatus::default()
    }
}

/// A Warning BackOff event about Pod prod/api, seen `count` times, last at `last_seen`.
pub fn backoff_event(count: i64, last_seen: jiff::Timestamp) -> crate::routing::EventCandidate {
    crate::routing::EventCandidate {
        type_: "Warning".into(),
        reason: "BackOff".into(),
        involved: crate::routing::InvolvedObject {
            kind: "Pod".into(),
            name: "api".into(),
            namespace: "prod".into(),
        },
        namespace: "prod".into(),
        count,
        last_seen: Some(last_seen),
        ..Default::default()
    }
}
