//! The TwiML a policy's calls run, pure: the inline document of each call, and the two
//! documents hosted by Twilio (ack, bridge). The escalation runner and the CallPolicy
//! reconciler both build from here, so what is published and what is dialed agree.

use sha2::{Digest, Sha256};

use crate::api::CallPolicySpec;
use crate::twilio::functions::ack;
use crate::twilio::twiml::{
    fit_inline, Beep, Conference, Dial, Gather, Method, Response, Say, TwimlError,
};

/// The spoken prompts, in the message's language where we have them.
struct Prompts {
    press: fn(&str) -> String,
    no_input: &'static str,
    acknowledged: &'static str,
    bridge: &'static str,
    /// Ends a message that was cut to fit Twilio's TwiML limit.
    shortened: &'static str,
    /// What a test call says, given the policy's name.
    test_message: fn(&str) -> String,
    /// A test call's prompt: the key proves the person can be reached; no room is joined.
    test_press: fn(&str) -> String,
    /// A test call's answer to the key, before it hangs up.
    test_confirmed: &'static str,
}

const ENGLISH: Prompts = Prompts {
    press: |digit| format!("Press {digit} to acknowledge and join the incident room."),
    no_input: "No acknowledgement received. Goodbye.",
    acknowledged: "Acknowledged. Joining the incident room.",
    bridge: "Joining the incident room.",
    shortened: "(message shortened)",
    test_message: |policy| format!("This is a test call from alertcall for policy {policy}."),
    test_press: |digit| format!("Press {digit} to confirm you can be reached."),
    test_confirmed: "Thank you. The test passed. Goodbye.",
};

const JAPANESE: Prompts = Prompts {
    press: |digit| format!("確認してインシデントルームに参加するには、{digit}を押してください。"),
    no_input: "確認が取れませんでした。失礼します。",
    acknowledged: "確認しました。インシデントルームに接続します。",
    bridge: "インシデントルームに接続します。",
    shortened: "（以下省略）",
    test_message: |policy| format!("alertcall のポリシー {policy} のテスト電話です。"),
    test_press: |digit| format!("着信を確認できたら、{digit}を押してください。"),
    test_confirmed: "ありがとうございます。テストは成功しました。失礼します。",
};

fn prompts(language: &str) -> &'static Prompts {
    if language.starts_with("ja") {
        &JAPANESE
    } else {
        &ENGLISH
    }
}

/// The conference room of a policy: `spec.conference.room`, else `<namespace>-<name>`.
pub fn room_name(spec: &CallPolicySpec, namespace: &str, name: &str) -> String {
    spec.conference
        .room
        .clone()
        .unwrap_or_else(|| format!("{namespace}-{name}"))
}

fn say(spec: &CallPolicySpec, text: impl Into<String>) -> Say {
    let mut say = Say::new(text).language(&spec.message.language);
    if let Some(voice) = &spec.message.voice {
        say = say.voice(voice);
    }
    say
}

/// The inline TwiML of one call: the message (repeated) and the prompt inside a Gather, so a
/// keypress during the message counts; its action is the ack document. No input: goodbye.
///
/// A summary too long for Twilio's limit once escaped is shortened, marked as such, so the call
/// still rings; only a policy whose prompts and URL leave no room at all is an error.
pub fn call_twiml(
    spec: &CallPolicySpec,
    summary: &str,
    ack_url: &str,
) -> Result<String, TwimlError> {
    let prompts = prompts(&spec.message.language);
    fit_inline(summary, prompts.shortened, |text| {
        call_document(spec, text, ack_url)
    })
}

/// What a call is for: a page, or a test of the recipient's phone (`spec.test`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Purpose {
    #[default]
    Page,
    Test,
}

/// The inline TwiML of a call for `purpose`: a page speaks the summary and asks for the key to
/// join the room; a test speaks `summary` (its [`test_message`]) and asks for the key to
/// confirm the phone works.
pub fn twiml_for(
    purpose: Purpose,
    spec: &CallPolicySpec,
    summary: &str,
    ack_url: &str,
) -> Result<String, TwimlError> {
    match purpose {
        Purpose::Page => call_twiml(spec, summary, ack_url),
        Purpose::Test => {
            let prompts = prompts(&spec.message.language);
            let press = (prompts.test_press)(&spec.acknowledgement.digits);
            fit_inline(summary, prompts.shortened, |text| {
                gather_document(spec, text, ack_url, press.clone())
            })
        }
    }
}

/// What a test call of the policy named `policy` says before its prompt.
pub fn test_message(spec: &CallPolicySpec, policy: &str) -> String {
    (prompts(&spec.message.language).test_message)(policy)
}

/// [`call_twiml`]'s document with the whole summary, not shortened: what policy validation
/// measures to tell whether messages will be cut.
pub fn call_document(spec: &CallPolicySpec, summary: &str, ack_url: &str) -> Response {
    let prompts = prompts(&spec.message.language);
    gather_document(
        spec,
        summary,
        ack_url,
        (prompts.press)(&spec.acknowledgement.digits),
    )
}

fn gather_document(spec: &CallPolicySpec, summary: &str, ack_url: &str, press: String) -> Response {
    let prompts = prompts(&spec.message.language);
    Response::new()
        .gather(
            Gather::new()
                .num_digits(1)
                // NB: Twilio's default finishing key `#` would end the Gather with no digits, so
                // a policy whose key is `#` could never be acknowledged.
                .finish_on_key("")
                .timeout(spec.acknowledgement.gather_timeout_seconds)
                .action(ack_url)
                .method(action_method(ack_url))
                .say(say(spec, summary).loop_count(spec.message.repeat.max(1)))
                .say(say(spec, press)),
        )
        .say(say(spec, prompts.no_input))
        .hangup()
}

/// How Twilio requests the Gather's action. A hosted document (`.xml`) is static, and Twilio
/// promises static assets only to GET; the acknowledgement Function and the operator's own
/// endpoint read the posted keypress.
fn action_method(ack_url: &str) -> Method {
    let hosted_document = url::Url::parse(ack_url).is_ok_and(|url| url.path().ends_with(".xml"));
    if hosted_document {
        Method::Get
    } else {
        Method::Post
    }
}

fn conference(spec: &CallPolicySpec, room: &str) -> Conference {
    let mut conference = Conference::new(room)
        .start_conference_on_enter(true)
        .end_conference_on_exit(false)
        .beep(Beep::OnEnter);
    if let Some(url) = &spec.conference.hold_music_url {
        conference = conference.wait_url(url).wait_method(Method::Get);
    }
    if spec.conference.record {
        conference = conference.record(true);
    }
    conference
}

/// Confirms the keypress and joins the room; the first one in hears hold music.
pub fn ack_document(spec: &CallPolicySpec, room: &str) -> String {
    let prompts = prompts(&spec.message.language);
    Response::new()
        .say(say(spec, prompts.acknowledged))
        .dial(Dial::conference(conference(spec, room)))
        .to_xml()
}

/// A test call's answer to the key: a short confirmation, then the call ends. No room.
pub fn test_ack_document(spec: &CallPolicySpec) -> String {
    let prompts = prompts(&spec.message.language);
    Response::new()
        .say(say(spec, prompts.test_confirmed))
        .hangup()
        .to_xml()
}

/// What a caller of the bridge number hears before joining the same room.
pub fn bridge_document(spec: &CallPolicySpec, room: &str) -> String {
    let prompts = prompts(&spec.message.language);
    Response::new()
        .say(say(spec, prompts.bridge))
        .dial(Dial::conference(conference(spec, room)))
        .to_xml()
}

/// What the acknowledgement function says to confirm a keypress, in the policy's language: the
/// same words as [`ack_document`].
pub fn acknowledged_prompt(spec: &CallPolicySpec) -> &'static str {
    prompts(&spec.message.language).acknowledged
}

/// What a call hears when no key was pressed, as in [`call_document`].
pub fn no_input_prompt(spec: &CallPolicySpec) -> &'static str {
    prompts(&spec.message.language).no_input
}

/// The `<Gather>` action of one call: the deployed acknowledgement function's URL
/// ([`crate::twilio::functions::ack`]) with the query `ack.js` reads, so its answer is [`ack_document`] for this policy and
/// room, and its Sync item names `attempt_id`.
pub fn ack_action_url(
    function_url: &str,
    spec: &CallPolicySpec,
    room: &str,
    attempt_id: &str,
) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(function_url)?;
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair(ack::query::ATTEMPT, attempt_id);
        pairs.append_pair(ack::query::ROOM, room);
        pairs.append_pair(ack::query::SAY, acknowledged_prompt(spec));
        pairs.append_pair(ack::query::LANGUAGE, &spec.message.language);
        if let Some(voice) = &spec.message.voice {
            pairs.append_pair(ack::query::VOICE, voice);
        }
        if let Some(hold) = &spec.conference.hold_music_url {
            pairs.append_pair(ack::query::HOLD, hold);
        }
        if spec.conference.record {
            pairs.append_pair(ack::query::RECORD, "true");
        }
        pairs.append_pair(ack::query::BYE, no_input_prompt(spec));
    }
    Ok(url.to_string())
}

/// The `<Gather>` action of a test call: the acknowledgement function records the keypress as
/// for a page, but with no `room` in the query it answers with the test's confirmation only,
/// and the call ends after it.
pub fn test_ack_action_url(
    function_url: &str,
    spec: &CallPolicySpec,
    attempt_id: &str,
) -> Result<String, url::ParseError> {
    let prompts = prompts(&spec.message.language);
    let mut url = url::Url::parse(function_url)?;
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair(ack::query::ATTEMPT, attempt_id);
        pairs.append_pair(ack::query::SAY, prompts.test_confirmed);
        pairs.append_pair(ack::query::LANGUAGE, &spec.message.language);
        if let Some(voice) = &spec.message.voice {
            pairs.append_pair(ack::query::VOICE, voice);
        }
        pairs.append_pair(ack::query::BYE, no_input_prompt(spec));
    }
    Ok(url.to_string())
}

/// The hosted documents of a policy. A call that pressed nothing hears its goodbye from its own
/// inline document, so no call ever fetches a hosted one for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedDocuments {
    pub ack: String,
    pub bridge: String,
}

impl HostedDocuments {
    pub fn render(spec: &CallPolicySpec, room: &str) -> Self {
        Self {
            ack: ack_document(spec, room),
            bridge: bridge_document(spec, room),
        }
    }

    /// Hash of the content; an unchanged hash means nothing to upload.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for document in [&self.ack, &self.bridge] {
            hasher.update((document.len() as u64).to_be_bytes());
            hasher.update(document.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn call_gathers_one_key_during_the_message_and_says_goodbye() {
        let spec = fixtures::policy_spec();
        let xml = call_twiml(
            &spec,
            "Disk full on db-0 <primary> & replica",
            "https://x.twil.io/ack",
        )
        .unwrap_or_default();
        assert!(xml.contains(r#"numDigits="1""#), "{xml}");
        assert!(xml.contains(r#"action="https://x.twil.io/ack""#), "{xml}");
        assert!(xml.contains("&lt;primary&gt; &amp; replica"), "{xml}");
        assert!(xml.contains(r#"loop="2""#), "{xml}");
        let gather_end = xml.find("</Gather>").unwrap_or(0);
        let goodbye = xml.find("No acknowledgement received").unwrap_or(0);
        let hangup = xml.find("<Hangup").unwrap_or(0);
        assert!(gather_end < goodbye && goodbye < hangup, "{xml}");
    }

    /// The method attribute of the document's one element named `tag`.
    fn method_of(xml: &str, tag: &str) -> Option<String> {
        let document =
            roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML: {e}\n{xml}"));
        let node = document.descendants().find(|n| n.has_tag_name(tag))?;
        node.attribute(if tag == "Conference" {
            "waitMethod"
        } else {
            "method"
        })
        .map(str::to_string)
    }

    #[test]
    fn static_documents_are_fetched_by_get_and_keypress_handlers_by_post() {
        let spec = fixtures::policy_spec();
        let cases = [
            ("https://svc-1234.twil.io/prod/oncall/ack.xml", "GET"),
            (
                "https://svc-1234.twil.io/alertcall/ack?attempt=r1-a",
                "POST",
            ),
            (
                "https://pager.example/twiml/ack/prod/oncall?call=prod/p",
                "POST",
            ),
        ];
        for (url, method) in cases {
            let xml = call_twiml(&spec, "Disk full", url).unwrap_or_default();
            assert_eq!(method_of(&xml, "Gather").as_deref(), Some(method), "{url}");
        }
        let mut spec = fixtures::policy_spec();
        spec.conference.hold_music_url = Some("https://example.com/hold.mp3".into());
        let docs = HostedDocuments::render(&spec, "room");
        for doc in [&docs.ack, &docs.bridge] {
            assert_eq!(
                method_of(doc, "Conference").as_deref(),
                Some("GET"),
                "{doc}"
            );
        }
    }

    #[test]
    fn every_key_is_a_digit_so_hash_acknowledges() {
        let mut spec = fixtures::policy_spec();
        spec.acknowledgement.digits = "#".into();
        let xml = call_twiml(&spec, "Disk full", "https://x.twil.io/ack").unwrap_or_default();
        assert!(xml.contains(r#"finishOnKey="""#), "{xml}");
    }

    #[test]
    fn japanese_policy_gets_japanese_prompts() {
        let mut spec = fixtures::policy_spec();
        spec.message.language = "ja-JP".into();
        spec.message.voice = Some("Polly.Mizuki".into());
        let xml = call_twiml(&spec, "本番でエラー", "https://x/ack").unwrap_or_default();
        assert!(xml.contains("1を押してください"), "{xml}");
        assert!(xml.contains(r#"voice="Polly.Mizuki""#), "{xml}");
        assert!(xml.contains(r#"language="ja-JP""#), "{xml}");
    }

    /// The texts of the `<Say>`s inside the `<Gather>`, and the whole document's Say count.
    fn gathered_says(xml: &str) -> Vec<String> {
        let document =
            roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML: {e}\n{xml}"));
        let gather = document
            .descendants()
            .find(|n| n.has_tag_name("Gather"))
            .unwrap_or_else(|| panic!("no Gather in {xml}"));
        gather
            .children()
            .filter(|n| n.has_tag_name("Say"))
            .map(|n| n.text().unwrap_or_default().to_string())
            .collect()
    }

    /// The policy with the longest prompt options the schema allows.
    fn longest_options(language: &str) -> CallPolicySpec {
        let mut spec = fixtures::policy_spec();
        spec.message.language = language.into();
        spec.message.voice = Some("V".repeat(64));
        spec.message.repeat = 5;
        spec.acknowledgement.digits = "#".into();
        spec.acknowledgement.gather_timeout_seconds = 60;
        spec
    }

    #[test]
    fn hostile_summaries_are_shortened_to_fit_and_still_parse() {
        let mixed = "障害が発生しました & <db-0> \"primary\" 'down' 😀 ".repeat(100);
        let summaries = [
            ("amp", "&".repeat(2000)),
            ("lt", "<".repeat(2000)),
            ("quote", "\"".repeat(2000)),
            ("apos", "'".repeat(2000)),
            ("japanese", "障害が発生しました".repeat(167)),
            ("emoji", "😀".repeat(2000)),
            ("mixed", mixed.chars().take(2000).collect()),
        ];
        let ack_url = format!(
            "https://{}.twil.io/{}/ack.xml",
            "x".repeat(60),
            "y".repeat(250)
        );
        let policies = [
            ("default", fixtures::policy_spec()),
            ("english", longest_options("en-Latn-US-x0000000-y0000000")),
            ("japanese", longest_options("ja-JP")),
        ];
        for (policy, spec) in &policies {
            let shortened = prompts(&spec.message.language).shortened;
            for (name, summary) in &summaries {
                let xml = call_twiml(spec, summary, &ack_url)
                    .unwrap_or_else(|e| panic!("{policy}/{name}: {e}"));
                assert!(
                    xml.chars().count() <= 4000 && xml.encode_utf16().count() <= 4000,
                    "{policy}/{name}: {} characters",
                    xml.chars().count()
                );
                let says = gathered_says(&xml);
                let whole = call_document(spec, summary, &ack_url).to_xml();
                if whole.encode_utf16().count() <= 4000 {
                    assert_eq!(&says[0], summary, "{policy}/{name}");
                    continue;
                }
                let said = says[0]
                    .strip_suffix(shortened)
                    .unwrap_or_else(|| panic!("{policy}/{name}: not marked: {}", says[0]));
                assert!(summary.starts_with(said.trim_end()), "{policy}/{name}");
                assert!(
                    said.trim().chars().count() >= 100,
                    "{policy}/{name}: {said}"
                );
                // The prompt after the message is never what gets cut.
                assert!(
                    says[1].contains(&spec.acknowledgement.digits),
                    "{policy}/{name}"
                );
            }
        }
    }

    #[test]
    fn summary_that_fits_is_spoken_whole() {
        let spec = longest_options("ja-JP");
        let summary = "障害が発生しました".repeat(100);
        let xml = call_twiml(&spec, &summary, "https://x/ack").unwrap_or_default();
        assert_eq!(gathered_says(&xml)[0], summary);
    }

    #[test]
    fn ack_and_bridge_join_the_same_room_with_hold_music_and_recording() {
        let mut spec = fixtures::policy_spec();
        spec.conference.hold_music_url = Some("https://example.com/hold.mp3".into());
        spec.conference.record = true;
        let docs = HostedDocuments::render(&spec, "ns-oncall");
        for doc in [&docs.ack, &docs.bridge] {
            assert!(doc.contains(">ns-oncall</Conference>"), "{doc}");
            assert!(
                doc.contains(r#"waitUrl="https://example.com/hold.mp3""#),
                "{doc}"
            );
            assert!(doc.contains(r#"record="record-from-start""#), "{doc}");
        }
    }

    #[test]
    fn hash_changes_with_content_only() {
        let spec = fixtures::policy_spec();
        let a = HostedDocuments::render(&spec, "room");
        assert_eq!(
            a.content_hash(),
            HostedDocuments::render(&spec, "room").content_hash()
        );
        assert_ne!(
            a.content_hash(),
            HostedDocuments::render(&spec, "other").content_hash()
        );
        assert_eq!(a.content_hash().len(), 64);
    }

    #[test]
    fn a_test_call_says_it_is_a_test_and_never_joins_the_room() {
        let spec = fixtures::policy_spec();
        let message = test_message(&spec, "oncall");
        assert_eq!(
            message,
            "This is a test call from alertcall for policy oncall."
        );
        let xml = twiml_for(Purpose::Test, &spec, &message, "https://x/ack").unwrap_or_default();
        let says = gathered_says(&xml);
        assert_eq!(says[0], message);
        assert_eq!(says[1], "Press 1 to confirm you can be reached.");
        assert!(!xml.contains("incident room"), "{xml}");
        let confirmed = test_ack_document(&spec);
        assert!(!confirmed.contains("<Conference"), "{confirmed}");
        assert!(confirmed.contains("<Hangup"), "{confirmed}");
        let url = test_ack_action_url("https://svc.twil.io/alertcall/ack", &spec, "r1-alice")
            .unwrap_or_default();
        assert!(!url.contains("room="), "{url}");
        assert!(url.contains("attempt=r1-alice"), "{url}");
    }

    #[test]
    fn room_defaults_to_namespace_and_name() {
        let mut spec = fixtures::policy_spec();
        assert_eq!(room_name(&spec, "prod", "oncall"), "prod-oncall");
        spec.conference.room = Some("war-room".into());
        assert_eq!(room_name(&spec, "prod", "oncall"), "war-room");
    }
}
