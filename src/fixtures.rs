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
    }
}
