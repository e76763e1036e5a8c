//! Reads voice TwiML into the verbs the simulator executes (pure).

/// One verb of a `<Response>`.
#[derive(Clone, Debug, PartialEq)]
pub enum Verb {
    Say {
        text: String,
        loops: u32,
    },
    Play {
        url: String,
        loops: u32,
    },
    Pause {
        length: f64,
    },
    Gather {
        action: Option<String>,
        method: String,
        num_digits: Option<usize>,
        timeout: f64,
        finish_on_key: String,
        action_on_empty_result: bool,
        prompt: Vec<Verb>,
    },
    Dial {
        action: Option<String>,
        method: String,
        timeout: f64,
        record: String,
        target: DialTarget,
    },
    Redirect {
        url: String,
        method: String,
    },
    Hangup,
    Reject,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DialTarget {
    Conference(Box<ConferenceAttrs>),
    /// `<Number>`, `<Client>`, `<Sip>` or bare text: addresses to ring.
    Endpoints(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ConferenceAttrs {
    pub name: String,
    pub wait_url: Option<String>,
    pub wait_method: String,
    pub record: String,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    pub muted: bool,
    pub beep: String,
    pub participant_label: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    pub status_callback_event: Vec<String>,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TwimlError {
    #[error("TwiML is not well-formed XML: {0}")]
    Xml(String),
    #[error("TwiML root element must be <Response>, found <{0}>")]
    Root(String),
    #[error("unsupported or invalid TwiML verb <{0}>")]
    Verb(String),
    #[error("invalid attribute {attr}={value:?} on <{verb}>")]
    Attr {
        verb: String,
        attr: String,
        value: String,
    },
}

/// Parses a TwiML document.
pub fn parse(document: &str) -> Result<Vec<Verb>, TwimlError> {
    let doc =
        roxmltree::Document::parse(document.trim()).map_err(|e| TwimlError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Response" {
        return Err(TwimlError::Root(root.tag_name().name().to_string()));
    }
    root.children()
        .filter(|n| n.is_element())
        .map(verb)
        .collect()
}

fn attr_f64(node: roxmltree::Node, name: &str, default: f64) -> Result<f64, TwimlError> {
    match node.attribute(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| bad(node, name, v)),
    }
}

fn attr_bool(node: roxmltree::Node, name: &str, default: bool) -> Result<bool, TwimlError> {
    match node.attribute(name) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(bad(node, name, v)),
    }
}

fn attr_method(node: roxmltree::Node, name: &str, default: &str) -> Result<String, TwimlError> {
    match node.attribute(name) {
        None => Ok(default.to_string()),
        Some(v) if v.eq_ignore_ascii_case("GET") => Ok("GET".into()),
        Some(v) if v.eq_ignore_ascii_case("POST") => Ok("POST".into()),
        Some(v) => Err(bad(node, name, v)),
    }
}

fn bad(node: roxmltree::Node, attr: &str, value: &str) -> TwimlError {
    TwimlError::Attr {
        verb: node.tag_name().name().to_string(),
        attr: attr.to_string(),
        value: value.to_string(),
    }
}

fn text(node: roxmltree::Node) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<String>()
        .trim()
        .to_string()
}

fn loops(node: roxmltree::Node) -> Result<u32, TwimlError> {
    match node.attribute("loop") {
        None => Ok(1),
        // NB: Twilio repeats loop="0" until hangup or 1,000 iterations.
        Some(v) => match v.trim().parse::<u32>() {
            Ok(0) => Ok(1000),
            Ok(n) => Ok(n),
            Err(_) => Err(bad(node, "loop", v)),
        },
    }
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn verb(node: roxmltree::Node) -> Result<Verb, TwimlError> {
    let name = node.tag_name().name();
    Ok(match name {
        "Say" => Verb::Say {
            text: text(node),
            loops: loops(node)?,
        },
        "Play" => Verb::Play {
            url: text(node),
            loops: loops(node)?,
        },
        "Pause" => Verb::Pause {
            length: attr_f64(node, "length", 1.0)?,
        },
        "Hangup" => Verb::Hangup,
        "Reject" => Verb::Reject,
        "Redirect" => Verb::Redirect {
            url: text(node),
            method: attr_method(node, "method", "POST")?,
        },
        "Gather" => {
            let num_digits = match node.attribute("numDigits") {
                None => None,
                Some(v) => Some(
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(node, "numDigits", v))?,
                ),
            };
            let prompt = node
                .children()
                .filter(|n| n.is_element())
                .map(|child| match child.tag_name().name() {
                    "Say" | "Play" | "Pause" => verb(child),
                    other => Err(TwimlError::Verb(format!("Gather><{other}"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Verb::Gather {
                action: non_empty(node.attribute("action")),
                method: attr_method(node, "method", "POST")?,
                num_digits,
                timeout: attr_f64(node, "timeout", 5.0)?,
                finish_on_key: node.attribute("finishOnKey").unwrap_or("#").to_string(),
                action_on_empty_result: attr_bool(node, "actionOnEmptyResult", false)?,
                prompt,
            }
        }
        "Dial" => {
            let children: Vec<_> = node.children().filter(|n| n.is_element()).collect();
            let target = match children.first() {
                Some(child) if child.tag_name().name() == "Conference" => {
                    DialTarget::Conference(Box::new(conference(*child)?))
                }
                Some(_) => DialTarget::Endpoints(
                    children
                        .iter()
                        .map(|c| match c.tag_name().name() {
                            "Number" | "Sip" => Ok(text(*c)),
                            "Client" => Ok(format!("client:{}", text(*c))),
                            other => Err(TwimlError::Verb(format!("Dial><{other}"))),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                None => DialTarget::Endpoints(vec![text(node)]),
            };
            Verb::Dial {
                action: non_empty(node.attribute("action")),
                method: attr_method(node, "method", "POST")?,
                timeout: attr_f64(node, "timeout", 30.0)?,
                record: node
                    .attribute("record")
                    .unwrap_or("do-not-record")
                    .to_string(),
                target,
            }
        }
        other => return Err(TwimlError::Verb(other.to_string())),
    })
}

fn conference(node: roxmltree::Node) -> Result<ConferenceAttrs, TwimlError> {
    let name = text(node);
    if name.is_empty() {
        return Err(bad(node, "name", ""));
    }
    Ok(ConferenceAttrs {
        name,
        wait_url: node.attribute("waitUrl").map(str::to_string),
        wait_method: attr_method(node, "waitMethod", "POST")?,
        record: node
            .attribute("record")
            .unwrap_or("do-not-record")
            .to_string(),
        start_conference_on_enter: attr_bool(node, "startConferenceOnEnter", true)?,
        end_conference_on_exit: attr_bool(node, "endConferenceOnExit", false)?,
        muted: attr_bool(node, "muted", false)?,
        beep: node.attribute("beep").unwrap_or("true").to_string(),
        participant_label: non_empty(node.attribute("participantLabel")),
        status_callback: non_empty(node.attribute("statusCallback")),
        status_callback_method: attr_method(node, "statusCallbackMethod", "POST")?,
        status_callback_event: node
            .attribute("statusCallbackEvent")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        recording_status_callback: non_empty(node.attribute("recordingStatusCallback")),
        recording_status_callback_method: attr_method(
            node,
            "recordingStatusCallbackMethod",
            "POST",
        )?,
    })
}

/// Simulated seconds a spoken text takes: about 15 characters a second, at least one second.
pub fn speech_seconds(text: &str) -> f64 {
    (text.chars().count() as f64 / 15.0).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_document() {
        let verbs = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <Response>
              <Say language="ja-JP" loop="2">Disk &amp; full</Say>
              <Gather numDigits="1" timeout="8" action="http://127.0.0.1:1/ack.xml" method="GET">
                <Say>Press 1</Say>
              </Gather>
              <Say>Goodbye</Say><Hangup/>
            </Response>"#,
        )
        .unwrap();
        assert_eq!(
            verbs[0],
            Verb::Say {
                text: "Disk & full".into(),
                loops: 2
            }
        );
        let Verb::Gather {
            action,
            method,
            num_digits,
            timeout,
            prompt,
            ..
        } = &verbs[1]
        else {
            panic!("{verbs:?}")
        };
        assert_eq!(action.as_deref(), Some("http://127.0.0.1:1/ack.xml"));
        assert_eq!(
            (method.as_str(), *num_digits, *timeout),
            ("GET", Some(1), 8.0)
        );
        assert_eq!(prompt.len(), 1);
        assert_eq!(verbs[3], Verb::Hangup);
    }

    #[test]
    fn dial_conference() {
        let verbs = parse(
            r#"<Response><Dial><Conference waitUrl="" record="record-from-start" endConferenceOnExit="true">Room A</Conference></Dial></Response>"#,
        )
        .unwrap();
        let Verb::Dial {
            target: DialTarget::Conference(c),
            ..
        } = &verbs[0]
        else {
            panic!("{verbs:?}")
        };
        assert_eq!(c.name, "Room A");
        assert_eq!(c.wait_url.as_deref(), Some(""));
        assert_eq!(c.record, "record-from-start");
        assert!(c.end_conference_on_exit && c.start_conference_on_enter);
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(matches!(parse("<Response><Say>"), Err(TwimlError::Xml(_))));
        assert_eq!(parse("<Foo/>"), Err(TwimlError::Root("Foo".into())));
        assert_eq!(
            parse("<Response><Dance/></Response>"),
            Err(TwimlError::Verb("Dance".into()))
        );
        assert!(parse(r#"<Response><Pause length="x"/></Response>"#).is_err());
    }
}
