//! `alertcall demo`: the paging pipeline on the embedded examples, no cluster, no Twilio account.

use std::process::ExitCode;

use kube::ResourceExt;

use super::check::{qualified, Manifests};
use crate::api::{CallPolicy, Mode};
use crate::message::{render_or_fallback, MessageContext};

/// The examples compiled into the binary, so the demo runs from anywhere.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "examples/policy-sequential.yaml",
        include_str!("../../examples/policy-sequential.yaml"),
    ),
    (
        "examples/policy-simultaneous-all-ack.yaml",
        include_str!("../../examples/policy-simultaneous-all-ack.yaml"),
    ),
    (
        "examples/route-critical-pods-nodes.yaml",
        include_str!("../../examples/route-critical-pods-nodes.yaml"),
    ),
    (
        "examples/route-alertmanager-critical.yaml",
        include_str!("../../examples/route-alertmanager-critical.yaml"),
    ),
];

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Which example policy to page (`sre-oncall` or `db-owners`).
    #[arg(long = "example", default_value = "sre-oncall")]
    pub example: String,
}

pub fn run(args: &DemoArgs) -> ExitCode {
    let sources: Vec<(String, String)> = EXAMPLES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    let manifests = match Manifests::parse(&sources) {
        Ok(manifests) => manifests,
        Err(errors) => {
            for error in errors {
                eprintln!("error: embedded example: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let Some(policy) = manifests
        .policies
        .iter()
        .find(|p| p.name_any() == args.example)
    else {
        let names: Vec<String> = manifests.policies.iter().map(|p| p.name_any()).collect();
        eprintln!(
            "error: no example policy {:?}; choose one of: {}",
            args.example,
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    print!("{}", plan(policy, &MessageContext::sample()));
    ExitCode::SUCCESS
}

/// The call plan of a page for `policy`, as a person reads it.
pub fn plan(policy: &CallPolicy, context: &MessageContext) -> String {
    let spec = &policy.spec;
    let strategy = &spec.strategy;
    let mut out = String::new();
    out.push_str(
        "alertcall demo (preview): the call plan for a sample page. No calls are simulated yet.\n\n",
    );
    out.push_str(&format!("policy    CallPolicy {}\n", qualified(policy)));
    let how = match strategy.mode {
        Mode::Sequential => format!("Sequential, {:?} order", strategy.order),
        Mode::Simultaneous => format!("Simultaneous, complete on {:?}", strategy.completion),
    };
    out.push_str(&format!(
        "strategy  {how}; {} round(s), {}s apart; each call rings {}s\n",
        strategy.rounds, strategy.round_interval_seconds, strategy.ring_timeout_seconds
    ));
    let (text, error) = render_or_fallback(&spec.message.template, context);
    out.push_str(&format!(
        "message   ({}, said {}x) \"{text}\"\n",
        spec.message.language, spec.message.repeat
    ));
    if let Some(error) = error {
        out.push_str(&format!("          (fallback text: {error})\n"));
    }
    out.push_str(&format!(
        "ack       press {} within {}s, then join room {:?}\n",
        spec.acknowledgement.digits,
        spec.acknowledgement.gather_timeout_seconds,
        spec.conference.room.clone().unwrap_or_else(|| format!(
            "{}-{}",
            super::check::namespace_of(policy),
            policy.name_any()
        ))
    ));
    out.push_str("calls, round 1:\n");
    for (index, recipient) in spec.recipients.iter().enumerate() {
        let when = match strategy.mode {
            Mode::Sequential => format!("call {}", index + 1),
            Mode::Simultaneous => format!(
                "at +{}s",
                index as u32 / spec.limits.calls_per_second.max(1)
            ),
        };
        out.push_str(&format!(
            "  {when:<9} {:<8} {}\n",
            recipient.name,
            recipient.address.twilio_to()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_examples_parse_and_plan_every_recipient() {
        let sources: Vec<(String, String)> = EXAMPLES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let manifests = Manifests::parse(&sources).unwrap_or_default();
        assert_eq!(manifests.policies.len(), 2);
        for policy in &manifests.policies {
            let text = plan(policy, &MessageContext::sample());
            for recipient in &policy.spec.recipients {
                assert!(text.contains(&recipient.address.twilio_to()), "{text}");
            }
            assert!(!text.contains("{{"), "{text}");
            assert!(
                text.contains("Back-off restarting failed container api"),
                "{text}"
            );
        }
    }
}
