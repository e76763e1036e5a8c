//! TwiML voice documents: a small typed builder and an escaping XML writer (pure, no I/O).
//!
//! ```
//! use alertcall::twilio::twiml::{Gather, Response, Say};
//! let doc = Response::new()
//!     .say(Say::new("Disk full on db-0").language("en-US").loop_count(2))
//!     .gather(Gather::new().num_digits(1).action("https://example.com/ack.xml").say(Say::new("Press any key")))
//!     .hangup();
//! assert!(doc.to_xml().starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say"));
//! ```

use std::fmt::Write as _;

/// Twilio's limit on the inline `Twiml` parameter of Calls create/update ("Max 4000 characters").
pub const INLINE_TWIML_MAX_CHARS: usize = 4000;

const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Why a TwiML document cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TwimlError {
    #[error("inline TwiML is {chars} characters, over Twilio's limit of {max}")]
    TooLong { chars: usize, max: usize },
}

impl TwimlError {
    /// A stable short reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            TwimlError::TooLong { .. } => "TwimlTooLong",
        }
    }
}

/// Counts characters as Twilio's limit does: characters of the document as sent (after XML
/// escaping), so `&amp;` is five and `緊` is one.
///
/// NB: Twilio does not say which "characters" it counts. UTF-16 code units (a Java or JavaScript
/// string's length) are never fewer than Unicode characters and differ only outside the Basic
/// Multilingual Plane (an emoji counts two), so counting them holds under either reading. Bytes
/// would cut Japanese messages to a third for a reading nothing suggests.
pub fn inline_chars(document: &str) -> usize {
    document.encode_utf16().count()
}

/// Checks a finished document against [`INLINE_TWIML_MAX_CHARS`].
pub fn check_inline_size(document: &str) -> Result<(), TwimlError> {
    let chars = inline_chars(document);
    if chars > INLINE_TWIML_MAX_CHARS {
        Err(TwimlError::TooLong {
            chars,
            max: INLINE_TWIML_MAX_CHARS,
        })
    } else {
        Ok(())
    }
}

/// The inline document `render(text)` makes, with `text` shortened until it fits Twilio's limit:
/// the longest prefix of `text` (cut at a character boundary) followed by `marker`, so the callee
/// hears that something was left out. A page must ring even when its text is hostile (2,000 `&`
/// are 10,000 characters once escaped), so only a document too long without any of `text` is an
/// error.
pub fn fit_inline(
    text: &str,
    marker: &str,
    render: impl Fn(&str) -> Response,
) -> Result<String, TwimlError> {
    let whole = render(text).to_xml();
    if inline_chars(&whole) <= INLINE_TWIML_MAX_CHARS {
        return Ok(whole);
    }
    let cuts: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
    let shortened = |kept: usize| {
        let end = cuts.get(kept).copied().unwrap_or(text.len());
        let prefix = text[..end].trim_end();
        let text = if prefix.is_empty() {
            marker.to_string()
        } else {
            format!("{prefix} {marker}")
        };
        render(&text).to_xml()
    };
    // NB: the document's length never decreases as the kept prefix grows (escaping only adds,
    // trimming only removes what a longer prefix would keep), so the longest fit is found by
    // bisection: about a dozen renders for a 2,000-character summary.
    let (mut fits, mut too_long) = (None, cuts.len());
    let mut low = 0;
    while low < too_long {
        let mid = low + (too_long - low) / 2;
        let document = shortened(mid);
        if inline_chars(&document) <= INLINE_TWIML_MAX_CHARS {
            fits = Some(document);
            low = mid + 1;
        } else {
            too_long = mid;
        }
    }
    match fits {
        Some(document) => Ok(document),
        None => {
            // Not even the marker alone fits: the rest of the document is too long by itself.
            let document = shortened(0);
            check_inline_size(&document).map(|()| document)
        }
    }
}

/// HTTP method attribute values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// `<Conference beep>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beep {
    True,
    False,
    OnEnter,
    OnExit,
}

impl Beep {
    fn as_str(self) -> &'static str {
        match self {
            Beep::True => "true",
            Beep::False => "false",
            Beep::OnEnter => "onEnter",
            Beep::OnExit => "onExit",
        }
    }
}

/// `<Response>`: the document root.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    verbs: Vec<Verb>,
}

/// A verb directly under `<Response>`.
#[derive(Clone, Debug, PartialEq)]
pub enum Verb {
    Say(Say),
    Gather(Gather),
    Dial(Dial),
    Pause(Pause),
    Hangup,
    Redirect(Redirect),
}

impl Response {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn verbs(&self) -> &[Verb] {
        &self.verbs
    }

    pub fn say(mut self, say: Say) -> Self {
        self.verbs.push(Verb::Say(say));
        self
    }

    pub fn gather(mut self, gather: Gather) -> Self {
        self.verbs.push(Verb::Gather(gather));
        self
    }

    pub fn dial(mut self, dial: Dial) -> Self {
        self.verbs.push(Verb::Dial(dial));
        self
    }

    pub fn pause(mut self, pause: Pause) -> Self {
        self.verbs.push(Verb::Pause(pause));
        self
    }

    pub fn hangup(mut self) -> Self {
        self.verbs.push(Verb::Hangup);
        self
    }

    pub fn redirect(mut self, redirect: Redirect) -> Self {
        self.verbs.push(Verb::Redirect(redirect));
        self
    }

    /// The document with the XML prolog.
    pub fn to_xml(&self) -> String {
        let mut out = String::from(PROLOG);
        out.push_str("<Response>");
        for verb in &self.verbs {
            match verb {
                Verb::Say(say) => say.write(&mut out),
                Verb::Gather(gather) => gather.write(&mut out),
                Verb::Dial(dial) => dial.write(&mut out),
                Verb::Pause(pause) => pause.write(&mut out),
                Verb::Hangup => out.push_str("<Hangup/>"),
                Verb::Redirect(redirect) => redirect.write(&mut out),
            }
        }
        out.push_str("</Response>");
        out
    }

    /// The document for the `Twiml` parameter of Calls create, if it fits Twilio's limit.
    pub fn to_inline(&self) -> Result<String, TwimlError> {
        let xml = self.to_xml();
        check_inline_size(&xml)?;
        Ok(xml)
    }
}

/// `<Say>`: text spoken with text-to-speech.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Say {
    pub text: String,
    pub language: Option<String>,
    pub voice: Option<String>,
    /// `loop`; 0 repeats until hangup.
    pub loop_count: Option<u32>,
}

impl Say {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    pub fn loop_count(mut self, n: u32) -> Self {
        self.loop_count = Some(n);
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Say");
        attr_opt(out, "language", self.language.as_deref());
        attr_opt(out, "voice", self.voice.as_deref());
        attr_num(out, "loop", self.loop_count);
        out.push('>');
        text(out, &self.text);
        out.push_str("</Say>");
    }
}

/// `<Gather>`: collects key presses; nested `<Say>`/`<Pause>` play while it listens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gather {
    pub num_digits: Option<u32>,
    pub timeout: Option<u32>,
    /// Absolute URL: calls started with inline TwiML cannot resolve relative actions.
    pub action: Option<String>,
    pub method: Option<Method>,
    /// `finishOnKey`; Twilio's default (absent) is `#`, and the finishing key is not part of
    /// `Digits`, so `Some("")` makes every key, `#` included, a digit.
    pub finish_on_key: Option<String>,
    pub children: Vec<GatherChild>,
}

/// What `<Gather>` may contain (of the verbs this builder knows).
#[derive(Clone, Debug, PartialEq)]
pub enum GatherChild {
    Say(Say),
    Pause(Pause),
}

impl Gather {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn num_digits(mut self, n: u32) -> Self {
        self.num_digits = Some(n);
        self
    }

    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    pub fn finish_on_key(mut self, keys: impl Into<String>) -> Self {
        self.finish_on_key = Some(keys.into());
        self
    }

    pub fn say(mut self, say: Say) -> Self {
        self.children.push(GatherChild::Say(say));
        self
    }

    pub fn pause(mut self, pause: Pause) -> Self {
        self.children.push(GatherChild::Pause(pause));
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Gather");
        attr_opt(out, "action", self.action.as_deref());
        attr_opt(out, "method", self.method.map(Method::as_str));
        attr_num(out, "numDigits", self.num_digits);
        attr_num(out, "timeout", self.timeout);
        attr_opt(out, "finishOnKey", self.finish_on_key.as_deref());
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                GatherChild::Say(say) => say.write(out),
                GatherChild::Pause(pause) => pause.write(out),
            }
        }
        out.push_str("</Gather>");
    }
}

/// `<Dial>` with a `<Conference>` noun.
#[derive(Clone, Debug, PartialEq)]
pub struct Dial {
    pub action: Option<String>,
    pub method: Option<Method>,
    pub timeout: Option<u32>,
    pub conference: Conference,
}

impl Dial {
    pub fn conference(conference: Conference) -> Self {
        Self {
            action: None,
            method: None,
            timeout: None,
            conference,
        }
    }

    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Dial");
        attr_opt(out, "action", self.action.as_deref());
        attr_opt(out, "method", self.method.map(Method::as_str));
        attr_num(out, "timeout", self.timeout);
        out.push('>');
        self.conference.write(out);
        out.push_str("</Dial>");
    }
}

/// `<Conference>`: a named room.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conference {
    pub name: String,
    pub start_conference_on_enter: Option<bool>,
    pub end_conference_on_exit: Option<bool>,
    /// `Some("")` plays silence; `None` keeps Twilio's default hold music.
    pub wait_url: Option<String>,
    pub wait_method: Option<Method>,
    pub beep: Option<Beep>,
    /// `true` writes `record="record-from-start"`, `false` writes `record="do-not-record"`.
    pub record: Option<bool>,
    pub recording_status_callback: Option<String>,
    pub status_callback: Option<String>,
}

impl Conference {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    pub fn start_conference_on_enter(mut self, yes: bool) -> Self {
        self.start_conference_on_enter = Some(yes);
        self
    }

    pub fn end_conference_on_exit(mut self, yes: bool) -> Self {
        self.end_conference_on_exit = Some(yes);
        self
    }

    pub fn wait_url(mut self, url: impl Into<String>) -> Self {
        self.wait_url = Some(url.into());
        self
    }

    pub fn wait_method(mut self, method: Method) -> Self {
        self.wait_method = Some(method);
        self
    }

    pub fn beep(mut self, beep: Beep) -> Self {
        self.beep = Some(beep);
        self
    }

    pub fn record(mut self, yes: bool) -> Self {
        self.record = Some(yes);
        self
    }

    pub fn recording_status_callback(mut self, url: impl Into<String>) -> Self {
        self.recording_status_callback = Some(url.into());
        self
    }

    pub fn status_callback(mut self, url: impl Into<String>) -> Self {
        self.status_callback = Some(url.into());
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Conference");
        attr_opt(
            out,
            "startConferenceOnEnter",
            self.start_conference_on_enter.map(bool_str),
        );
        attr_opt(
            out,
            "endConferenceOnExit",
            self.end_conference_on_exit.map(bool_str),
        );
        attr_opt(out, "waitUrl", self.wait_url.as_deref());
        attr_opt(out, "waitMethod", self.wait_method.map(Method::as_str));
        attr_opt(out, "beep", self.beep.map(Beep::as_str));
        attr_opt(
            out,
            "record",
            self.record.map(|yes| {
                if yes {
                    "record-from-start"
                } else {
                    "do-not-record"
                }
            }),
        );
        attr_opt(
            out,
            "recordingStatusCallback",
            self.recording_status_callback.as_deref(),
        );
        attr_opt(out, "statusCallback", self.status_callback.as_deref());
        out.push('>');
        text(out, &self.name);
        out.push_str("</Conference>");
    }
}

/// `<Pause>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pause {
    pub length: Option<u32>,
}

impl Pause {
    pub fn seconds(length: u32) -> Self {
        Self {
            length: Some(length),
        }
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Pause");
        attr_num(out, "length", self.length);
        out.push_str("/>");
    }
}

/// `<Redirect>`: continue with the TwiML at `url`.
#[derive(Clone, Debug, PartialEq)]
pub struct Redirect {
    pub url: String,
    pub method: Option<Method>,
}

impl Redirect {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: None,
        }
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Redirect");
        attr_opt(out, "method", self.method.map(Method::as_str));
        out.push('>');
        text(out, &self.url);
        out.push_str("</Redirect>");
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// Characters XML 1.0 cannot carry at all, even escaped; they are dropped.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn text(out: &mut String, value: &str) {
    for c in value.chars().filter(|c| is_xml_char(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            // NB: `>` only needs escaping in `]]>`, but escaping it always is simpler and safe.
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

fn attr_opt(out: &mut String, name: &str, value: Option<&str>) {
    let Some(value) = value else { return };
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars().filter(|c| is_xml_char(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Attribute-value normalisation would turn these into spaces; keep them as written.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn attr_num(out: &mut String, name: &str, value: Option<u32>) {
    if let Some(n) = value {
        // Writing to a String cannot fail.
        let _ = write!(out, " {name}=\"{n}\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;
    use quick_xml::{Reader, XmlVersion};

    /// A parsed element: name, attributes (unescaped), text (unescaped), children.
    #[derive(Debug, PartialEq)]
    struct El {
        name: String,
        attrs: Vec<(String, String)>,
        text: String,
        children: Vec<El>,
    }

    impl El {
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn parse(xml: &str) -> El {
        let mut reader = Reader::from_str(xml);
        let mut stack: Vec<El> = Vec::new();
        let mut root = None;
        let mut saw_decl = false;
        let start = |e: &quick_xml::events::BytesStart<'_>| El {
            name: e.name().as_ref().to_string(),
            attrs: e
                .attributes()
                .map(|a| {
                    let a = a.expect("well-formed attribute");
                    (
                        a.key.as_ref().to_string(),
                        a.normalized_value(XmlVersion::Explicit1_0)
                            .expect("attribute escapes")
                            .into_owned(),
                    )
                })
                .collect(),
            text: String::new(),
            children: Vec::new(),
        };
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Decl(_) => saw_decl = true,
                Event::Start(e) => stack.push(start(&e)),
                Event::Empty(e) => {
                    let el = start(&e);
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
                Event::Text(t) => {
                    let s = t.xml_content(XmlVersion::Explicit1_0).into_owned();
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&s);
                    }
                }
                Event::GeneralRef(r) => {
                    if let Some(c) = r.resolve_char_ref().expect("char ref") {
                        if let Some(top) = stack.last_mut() {
                            top.text.push(c);
                        }
                        continue;
                    }
                    let s = match r.as_ref() {
                        "amp" => "&".to_string(),
                        "lt" => "<".to_string(),
                        "gt" => ">".to_string(),
                        "quot" => "\"".to_string(),
                        "apos" => "'".to_string(),
                        other => panic!("unexpected entity {other}"),
                    };
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&s);
                    }
                }
                Event::End(_) => {
                    let el = stack.pop().expect("balanced tags");
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
                Event::Eof => break,
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert!(saw_decl, "prolog missing");
        assert!(stack.is_empty(), "unclosed elements");
        root.expect("a root element")
    }

    const HOSTILE: &str =
        "a < b && c > d \"quoted\" 'single' ]]> <![CDATA[x]]> 緊急です。データベース停止 &amp;";

    #[test]
    fn twiml_prolog_and_shape() {
        let xml = Response::new()
            .say(Say::new("hello"))
            .pause(Pause::seconds(2))
            .hangup()
            .to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>hello</Say><Pause length="2"/><Hangup/></Response>"#
        );
    }

    #[test]
    fn twiml_hostile_text_round_trips() {
        let doc = Response::new()
            .say(
                Say::new(HOSTILE)
                    .language("ja-JP")
                    .voice("Polly.Mizuki")
                    .loop_count(2),
            )
            .gather(
                Gather::new()
                    .num_digits(1)
                    .timeout(8)
                    .action("https://x.test/ack.xml?a=1&b=\"2\"")
                    .method(Method::Get)
                    .say(Say::new(HOSTILE)),
            )
            .say(Say::new("さようなら"))
            .hangup();
        let xml = doc.to_xml();
        let root = parse(&xml);
        assert_eq!(root.name, "Response");
        let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Say", "Gather", "Say", "Hangup"]);
        let say = &root.children[0];
        assert_eq!(say.text, HOSTILE);
        assert_eq!(say.attr("language"), Some("ja-JP"));
        assert_eq!(say.attr("voice"), Some("Polly.Mizuki"));
        assert_eq!(say.attr("loop"), Some("2"));
        let gather = &root.children[1];
        assert_eq!(gather.attr("numDigits"), Some("1"));
        assert_eq!(gather.attr("timeout"), Some("8"));
        assert_eq!(gather.attr("method"), Some("GET"));
        assert_eq!(
            gather.attr("action"),
            Some("https://x.test/ack.xml?a=1&b=\"2\"")
        );
        assert_eq!(gather.children[0].name, "Say");
        assert_eq!(gather.children[0].text, HOSTILE);
        assert_eq!(root.children[2].text, "さようなら");
        // The raw text never contains an unescaped terminator or markup from the input.
        assert!(!xml.contains("]]>"));
        assert!(!xml.contains("<![CDATA["));
    }

    #[test]
    fn twiml_hostile_attributes_are_escaped() {
        let evil = "x\" onload='y' <z> & \t\n緊急";
        let xml = Response::new()
            .dial(
                Dial::conference(
                    Conference::new(evil)
                        .start_conference_on_enter(true)
                        .end_conference_on_exit(false)
                        .wait_url(evil)
                        .beep(Beep::OnEnter)
                        .record(true)
                        .recording_status_callback("https://r.test/?a=1&b=2")
                        .status_callback("https://s.test/'q'"),
                )
                .timeout(20),
            )
            .redirect(Redirect::new("https://x.test/next?a=<1>&b=2").method(Method::Post))
            .to_xml();
        assert!(
            xml.contains("waitUrl=\"x&quot; onload=&apos;y&apos; &lt;z&gt; &amp; &#9;&#10;緊急\""),
            "{xml}"
        );
        let root = parse(&xml);
        let dial = &root.children[0];
        assert_eq!(dial.name, "Dial");
        assert_eq!(dial.attr("timeout"), Some("20"));
        let conf = &dial.children[0];
        assert_eq!(conf.name, "Conference");
        assert_eq!(conf.text, evil);
        assert_eq!(conf.attr("waitUrl"), Some(evil));
        assert_eq!(conf.attr("startConferenceOnEnter"), Some("true"));
        assert_eq!(conf.attr("endConferenceOnExit"), Some("false"));
        assert_eq!(conf.attr("beep"), Some("onEnter"));
        assert_eq!(conf.attr("record"), Some("record-from-start"));
        assert_eq!(
            conf.attr("recordingStatusCallback"),
            Some("https://r.test/?a=1&b=2")
        );
        assert_eq!(conf.attr("statusCallback"), Some("https://s.test/'q'"));
        let redirect = &root.children[1];
        assert_eq!(redirect.attr("method"), Some("POST"));
        assert_eq!(redirect.text, "https://x.test/next?a=<1>&b=2");
    }

    #[test]
    fn twiml_optional_conference_attributes_are_omitted() {
        let xml = Response::new()
            .dial(Dial::conference(Conference::new("room")))
            .to_xml();
        assert!(
            xml.ends_with("<Dial><Conference>room</Conference></Dial></Response>"),
            "{xml}"
        );
        let xml = Response::new()
            .dial(Dial::conference(
                Conference::new("room").wait_url("").record(false),
            ))
            .to_xml();
        assert!(
            xml.contains(r#"<Conference waitUrl="" record="do-not-record">room</Conference>"#),
            "{xml}"
        );
    }

    #[test]
    fn twiml_characters_xml_cannot_carry_are_dropped() {
        let xml = Response::new()
            .say(Say::new("a\u{0}b\u{1b}c\u{FFFF}d"))
            .to_xml();
        assert_eq!(parse(&xml).children[0].text, "abcd");
    }

    #[test]
    fn twiml_gather_writes_an_empty_finish_on_key() {
        let xml = Response::new()
            .gather(Gather::new().num_digits(1).finish_on_key(""))
            .to_xml();
        assert!(
            xml.contains(r#"<Gather numDigits="1" finishOnKey=""/>"#),
            "{xml}"
        );
        assert_eq!(parse(&xml).children[0].attr("finishOnKey"), Some(""));
    }

    #[test]
    fn twiml_empty_gather_is_self_closing() {
        let xml = Response::new().gather(Gather::new().num_digits(1)).to_xml();
        assert!(xml.contains(r#"<Gather numDigits="1"/>"#), "{xml}");
        parse(&xml);
    }

    #[test]
    fn twiml_inline_size_limit_counts_characters() {
        let overhead = Response::new().say(Say::new("")).to_xml().chars().count();
        // Japanese is one character each though three bytes in UTF-8.
        let fits = "緊".repeat(INLINE_TWIML_MAX_CHARS - overhead);
        let doc = Response::new().say(Say::new(fits.clone()));
        let xml = doc.to_inline().expect("exactly at the limit fits");
        assert_eq!(inline_chars(&xml), INLINE_TWIML_MAX_CHARS);
        assert!(xml.len() > INLINE_TWIML_MAX_CHARS);

        let over = Response::new().say(Say::new(format!("{fits}x")));
        assert_eq!(
            over.to_inline(),
            Err(TwimlError::TooLong {
                chars: INLINE_TWIML_MAX_CHARS + 1,
                max: INLINE_TWIML_MAX_CHARS
            })
        );
        // Escapes count as they are sent: `&` becomes five characters.
        let amps = "&".repeat((INLINE_TWIML_MAX_CHARS - overhead) / 5 + 1);
        let err = Response::new().say(Say::new(amps)).to_inline();
        assert!(matches!(err, Err(TwimlError::TooLong { .. })), "{err:?}");
        assert_eq!(
            check_inline_size(&"a".repeat(4001)).map_err(|e| e.reason()),
            Err("TwimlTooLong")
        );
    }

    #[test]
    fn twiml_characters_outside_the_bmp_count_two() {
        assert_eq!(inline_chars("a緊😀"), 4);
    }

    fn spoken(text: &str) -> Response {
        Response::new().say(Say::new(text)).hangup()
    }

    #[test]
    fn twiml_fit_keeps_text_that_fits_as_it_is() {
        assert_eq!(
            fit_inline("Disk full & more", "(cut)", spoken),
            Ok(spoken("Disk full & more").to_xml())
        );
    }

    #[test]
    fn twiml_fit_shortens_to_the_longest_prefix_that_fits() {
        let cases = [
            "&".repeat(2000),
            "<".repeat(2000),
            "😀".repeat(3000),
            format!("{} tail", "a".repeat(5000)),
            "\u{0}".repeat(10) + &"x".repeat(4100),
        ];
        for text in cases {
            let xml = fit_inline(&text, "(cut)", spoken).unwrap_or_else(|e| panic!("{e}"));
            assert!(inline_chars(&xml) <= INLINE_TWIML_MAX_CHARS, "{xml}");
            let said = parse(&xml).children[0].text.clone();
            let kept = said
                .strip_suffix(" (cut)")
                .unwrap_or_else(|| panic!("no marker: {said}"));
            assert!(text.replace('\u{0}', "").starts_with(kept), "{kept}");
            // One more character would not have fitted.
            let longer: String = text
                .replace('\u{0}', "")
                .chars()
                .take(kept.chars().count() + 1)
                .collect();
            let over = spoken(&format!("{longer} (cut)")).to_xml();
            assert!(inline_chars(&over) > INLINE_TWIML_MAX_CHARS);
        }
    }

    #[test]
    fn twiml_fit_fails_only_when_the_rest_is_too_long() {
        let around = |text: &str| spoken(text).say(Say::new("x".repeat(INLINE_TWIML_MAX_CHARS)));
        assert!(matches!(
            fit_inline("hello", "(cut)", around),
            Err(TwimlError::TooLong { .. })
        ));
        // A document that only fits with no text at all still fits with the marker dropped in.
        let overhead = inline_chars(&spoken("").to_xml());
        let room = INLINE_TWIML_MAX_CHARS - overhead;
        let marker = "m".repeat(room);
        let xml = fit_inline(&"a".repeat(room + 1), &marker, spoken);
        assert_eq!(xml, Ok(spoken(&marker).to_xml()));
    }
}
