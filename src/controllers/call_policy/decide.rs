//! The pure part: what a spec, a policy's attempts or a build mean, with no I/O.

use std::collections::{BTreeMap, HashSet};

use crate::api::{Attempt, CallPolicySpec};
use crate::message::{self, MessageContext};
use crate::page::documents;
use crate::schedule::interval::Intervals;
use crate::twilio::twiml::{inline_chars, INLINE_TWIML_MAX_CHARS};
/// Longest `AlertCall.spec.summary` the schema accepts: what a call can be asked to speak.
const MAX_SUMMARY_CHARS: usize = 2000;

/// Problems with the spec that need no Twilio request: the schema's gaps, the template, and
/// whether the longest plausible call still fits Twilio's inline TwiML limit.
pub fn validate(spec: &CallPolicySpec) -> Vec<String> {
    let mut problems: Vec<String> = crate::api::validate::call_policy(spec)
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    if let Err(quiet) = Intervals::compile(&spec.quiet_hours, "spec.quietHours") {
        problems.extend(quiet.iter().map(ToString::to_string));
    }
    if !problems.is_empty() {
        return problems;
    }
    let summary = longest_summary(&spec.message.template);
    // A long but realistic hosted URL: the ack document's URL is part of every call's TwiML.
    let ack_url = format!(
        "https://{}.twil.io/{}/ack.xml",
        "x".repeat(60),
        "y".repeat(250)
    );
    // NB: calls shorten a summary that does not fit, so measure the unshortened document: a
    // template that leaves no room for the event's own text is still worth reporting.
    let chars = inline_chars(&documents::call_document(spec, &summary, &ack_url).to_xml());
    if chars > INLINE_TWIML_MAX_CHARS {
        problems.push(format!(
            "spec.message: the longest call renders to {chars} characters of TwiML, over Twilio's {INLINE_TWIML_MAX_CHARS}, so messages would be cut short; shorten the template"
        ));
    }
    problems
}

/// The template rendered with a sample whose free text is as long as Kubernetes allows (an
/// Event message is cut at 1024 bytes), capped at what an AlertCall summary may hold.
fn longest_summary(template: &str) -> String {
    let mut sample = MessageContext::sample();
    sample.message = "Back-off restarting failed container & <sidecar> ".repeat(21);
    sample.message.truncate(1024);
    let (text, _) = message::render_or_fallback(template, &sample);
    text.chars().take(MAX_SUMMARY_CHARS).collect()
}

/// The TwilioHealthy condition a policy's attempts give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

/// Pure: the most recent attempt per recipient decides; any with a Twilio error code makes the
/// policy unhealthy, naming code and recipient, and a later clean attempt clears it.
pub fn twilio_health(attempts_oldest_first: &[Attempt]) -> Health {
    let mut latest: BTreeMap<&str, &Attempt> = BTreeMap::new();
    for attempt in attempts_oldest_first {
        // An intent has not reached Twilio yet: it says nothing about errors.
        if attempt.call_sid.is_none() && attempt.twilio_error_code.is_none() {
            continue;
        }
        latest.insert(attempt.recipient.as_str(), attempt);
    }
    let failing: Vec<String> = latest
        .values()
        .filter_map(|attempt| {
            let code = attempt.twilio_error_code?;
            let detail = attempt
                .message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Some(format!(
                "Twilio error {code} ({}) calling {}{detail}",
                error_meaning(code),
                attempt.recipient
            ))
        })
        .collect();
    if failing.is_empty() {
        Health {
            ok: true,
            reason: if latest.is_empty() {
                "NoCallsYet"
            } else {
                "RecentCallsSucceeded"
            }
            .into(),
            message: if latest.is_empty() {
                "no call has been placed for this policy yet".into()
            } else {
                "the most recent call to each recipient reached Twilio without error".into()
            },
        }
    } else {
        Health {
            ok: false,
            reason: "TwilioErrors".into(),
            message: failing.join("; "),
        }
    }
}

fn error_meaning(code: i64) -> &'static str {
    match code {
        21211 => "invalid To number",
        21217 => "To number does not appear valid",
        21214 => "To number cannot be reached",
        21215 => "no geographic permission to call this country",
        21216 => "number is blocked",
        21210 => "From is not a verified caller ID or Twilio number",
        21212 => "invalid From number",
        21219 => "To is not verified on this trial account",
        13227 => "no geographic permission to dial this country",
        _ => "see twilio.com/docs/errors",
    }
}

/// `<namespace>/<name>/`, the folder of a policy's documents. Twilio caps asset paths at 255
/// characters, so long names are shortened and made unique again by a hash.
pub fn asset_prefix(namespace: &str, name: &str) -> String {
    let prefix = format!("{namespace}/{name}/");
    if prefix.len() <= 200 {
        return prefix;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(prefix.as_bytes());
    let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let short: String = name.chars().take(100).collect();
    format!("{namespace}/{short}-{hash}/")
}

/// Something in the install's Serverless service that alertcall did not create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    Asset { sid: String, friendly_name: String },
    Function { sid: String, friendly_name: String },
}

/// Whether an asset's friendly name is one alertcall gives: a document `<file>.xml` right in a
/// policy's folder `<namespace>/<name>/` ([`asset_prefix`]), of this version or an older one.
fn is_ours(friendly_name: &str) -> bool {
    let label = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
    };
    match friendly_name.split('/').collect::<Vec<_>>().as_slice() {
        [namespace, name, file] => {
            namespace.len() <= 63
                && label(namespace, &['-'])
                && label(name, &['-', '.'])
                && file
                    .strip_suffix(".xml")
                    .is_some_and(|stem| label(stem, &['-']))
        }
        _ => false,
    }
}

/// Pure: the first Function or asset of the service that alertcall did not create, if any.
/// A service holding one belongs to someone else: every build alertcall makes carries only its
/// own versions, so deploying would take theirs off the air (Twilio's assets plugin refuses
/// such a service for the same reason).
pub fn foreign(
    assets: &[crate::twilio::types::Asset],
    functions: &[crate::twilio::types::Function],
    ack_function: &str,
) -> Option<Foreign> {
    let function = functions
        .iter()
        .find(|f| f.friendly_name != ack_function)
        .map(|f| Foreign::Function {
            sid: f.sid.clone(),
            friendly_name: f.friendly_name.clone(),
        });
    function.or_else(|| {
        assets
            .iter()
            .find(|a| !is_ours(&a.friendly_name))
            .map(|a| Foreign::Asset {
                sid: a.sid.clone(),
                friendly_name: a.friendly_name.clone(),
            })
    })
}

/// Pure: the version SIDs of a build's `asset_versions` JSON to carry into the next build.
pub fn keep_versions(
    versions: &[serde_json::Value],
    exclude: &HashSet<String>,
    existing: &HashSet<String>,
) -> Vec<String> {
    versions
        .iter()
        .filter_map(|v| {
            let sid = v.get("sid")?.as_str()?;
            let asset = v.get("asset_sid")?.as_str()?;
            (!exclude.contains(asset) && existing.contains(asset)).then(|| sid.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn attempt(recipient: &str, sid: Option<&str>, code: Option<i64>) -> Attempt {
        Attempt {
            id: format!("{recipient}-{sid:?}"),
            recipient: recipient.into(),
            call_sid: sid.map(str::to_string),
            twilio_error_code: code,
            message: code.map(|c| format!("error {c}")),
            ..Default::default()
        }
    }

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(validate(&fixtures::policy_spec()), Vec::<String>::new());
    }

    #[test]
    fn template_that_cannot_fit_inline_twiml_is_rejected() {
        let mut spec = fixtures::policy_spec();
        // Every `&` becomes `&amp;` in TwiML: 900 of them alone are 4500 characters.
        spec.message.template = format!("{} {{{{ message }}}}", "&".repeat(900));
        let problems = validate(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("4000"), "{problems:?}");
    }

    #[test]
    fn broken_template_is_reported_before_length() {
        let mut spec = fixtures::policy_spec();
        spec.message.template = "{{ reason ".into();
        assert!(validate(&spec)[0].starts_with("spec.message.template"));
    }

    #[test]
    fn quiet_hours_that_do_not_parse_are_reported() {
        let mut spec = fixtures::policy_spec();
        spec.quiet_hours = vec![crate::api::TimeInterval {
            months: vec!["smarch".into()],
            ..Default::default()
        }];
        let problems = validate(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("spec.quietHours[0].months[0]"),
            "{problems:?}"
        );
    }

    #[test]
    fn health_names_code_and_recipient_and_clears_on_success() {
        let failing = [attempt("alice", None, Some(21211))];
        let health = twilio_health(&failing);
        assert!(!health.ok);
        assert!(health.message.contains("21211"), "{}", health.message);
        assert!(health.message.contains("alice"), "{}", health.message);
        let recovered = [
            attempt("alice", None, Some(21211)),
            attempt("alice", Some("CA1"), None),
        ];
        assert!(twilio_health(&recovered).ok);
        assert_eq!(twilio_health(&[]).reason, "NoCallsYet");
    }

    #[test]
    fn health_ignores_intents_and_keeps_other_recipients_errors() {
        let attempts = [
            attempt("bob", None, Some(21215)),
            attempt("alice", Some("CA1"), None),
            attempt("bob", None, None),
        ];
        let health = twilio_health(&attempts);
        assert!(!health.ok);
        assert!(health.message.contains("bob") && health.message.contains("21215"));
    }

    #[test]
    fn next_build_keeps_other_policies_versions_only() {
        let versions = vec![
            serde_json::json!({"sid": "ZN1", "asset_sid": "ZHmine"}),
            serde_json::json!({"sid": "ZN2", "asset_sid": "ZHother"}),
            serde_json::json!({"sid": "ZN3", "asset_sid": "ZHgone"}),
            serde_json::json!({"path": "/broken"}),
        ];
        let exclude = HashSet::from(["ZHmine".to_string()]);
        let existing = HashSet::from(["ZHmine".to_string(), "ZHother".to_string()]);
        assert_eq!(keep_versions(&versions, &exclude, &existing), vec!["ZN2"]);
    }

    #[test]
    fn only_documents_in_policy_folders_and_the_ack_function_are_ours() {
        use crate::twilio::types::{Asset, Function};
        let asset = |name: &str| Asset {
            sid: format!("ZH-{name}"),
            friendly_name: name.into(),
            ..Default::default()
        };
        let function = |name: &str| Function {
            sid: format!("ZF-{name}"),
            friendly_name: name.into(),
            ..Default::default()
        };
        let long = asset_prefix(&"n".repeat(63), &"x".repeat(253));
        let ours = [
            asset("prod/oncall/ack.xml"),
            asset("prod/oncall/bridge.xml"),
            // Uploaded by older versions; dropped at the next build, never a reason to refuse.
            asset("prod/oncall/no-ack.xml"),
            asset("team-a/db.primary/ack.xml"),
            asset(&format!("{long}bridge.xml")),
        ];
        let ack = function("alertcall-ack");
        assert_eq!(
            foreign(&ours, std::slice::from_ref(&ack), "alertcall-ack"),
            None
        );
        for stranger in [
            "index.html",
            "/prod/oncall/ack.xml",
            "prod/oncall/hold.mp3",
            "prod/oncall/sub/ack.xml",
            "Prod/oncall/ack.xml",
            "prod//ack.xml",
        ] {
            let mut assets = ours.to_vec();
            assets.push(asset(stranger));
            assert_eq!(
                foreign(&assets, &[], "alertcall-ack"),
                Some(Foreign::Asset {
                    sid: format!("ZH-{stranger}"),
                    friendly_name: stranger.into()
                }),
                "{stranger}"
            );
        }
        assert_eq!(
            foreign(&ours, &[ack, function("hello")], "alertcall-ack"),
            Some(Foreign::Function {
                sid: "ZF-hello".into(),
                friendly_name: "hello".into()
            })
        );
    }

    #[test]
    fn asset_paths_stay_within_twilio_limits_and_distinct() {
        assert_eq!(asset_prefix("prod", "oncall"), "prod/oncall/");
        let long_a = asset_prefix(&"n".repeat(63), &format!("{}a", "x".repeat(252)));
        let long_b = asset_prefix(&"n".repeat(63), &format!("{}b", "x".repeat(252)));
        assert_ne!(long_a, long_b);
        assert!(format!("/{long_a}bridge.xml").len() <= 255, "{long_a}");
    }
}
