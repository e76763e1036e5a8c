//! Deployed Functions. The simulator runs no JavaScript: a Function Version whose source carries
//! the marker of alertcall's acknowledgement function is emulated natively, following the
//! contract documented at the top of `src/twilio/functions/ack.js` (alertcall's `tests/functions.rs`
//! runs the real file under Node.js and this emulation on the same requests and requires the same
//! Sync item and TwiML). Any other Function answers 500, as a Function that throws does.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ledger::Event;
use super::routes::{get, Form};
use super::state::{Environment, FunctionVersion, Inner};
use super::sync;

/// The marker `ack.js` carries in its first line.
pub const ACK_MARKER: &str = "alertcall:ack-ledger/v1";

const DEFAULT_MAP: &str = "alertcall-acks";
const DEFAULT_TTL_SECONDS: i64 = 259_200;

fn xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn text(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars().filter(|c| xml_char(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn attribute(name: &str, value: Option<&str>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let mut out = format!(" {name}=\"");
    for c in value.chars().filter(|c| xml_char(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn non_empty<'a>(event: &'a Form, name: &str) -> Option<&'a str> {
    get(event, name).filter(|v| !v.is_empty())
}

fn say(words: &str, event: &Form) -> String {
    format!(
        "<Say{}{}>{}</Say>",
        attribute("language", non_empty(event, "language")),
        attribute("voice", non_empty(event, "voice")),
        text(words)
    )
}

fn document(body: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{body}</Response>")
}

/// The acknowledgement TwiML of `ack.js`.
pub fn ack_twiml(event: &Form) -> String {
    let mut body = String::new();
    if let Some(words) = non_empty(event, "say") {
        body.push_str(&say(words, event));
    }
    if let Some(room) = non_empty(event, "room") {
        let hold = non_empty(event, "hold");
        body.push_str("<Dial><Conference");
        body.push_str(&attribute("startConferenceOnEnter", Some("true")));
        body.push_str(&attribute("endConferenceOnExit", Some("false")));
        body.push_str(&attribute("waitUrl", hold));
        body.push_str(&attribute("waitMethod", hold.map(|_| "GET")));
        body.push_str(&attribute("beep", Some("onEnter")));
        body.push_str(&attribute(
            "record",
            (get(event, "record") == Some("true")).then_some("record-from-start"),
        ));
        body.push('>');
        body.push_str(&text(room));
        body.push_str("</Conference></Dial>");
    }
    document(&body)
}

/// What `ack.js` answers a request without a keypress.
pub fn no_ack_twiml(event: &Form) -> String {
    let bye = non_empty(event, "bye")
        .map(|b| say(b, event))
        .unwrap_or_default();
    document(&format!("{bye}<Hangup/>"))
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// Runs a deployed Function for a request whose parameters (query and body) are `event`.
pub(crate) fn invoke(
    sim: &Arc<Inner>,
    version: &FunctionVersion,
    env: &Environment,
    credentials: bool,
    event: &Form,
) -> Response {
    if !String::from_utf8_lossy(&version.content).contains(ACK_MARKER) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the simulator only runs alertcall's acknowledgement function, not {}",
                version.path
            ),
        )
            .into_response();
    }
    let (Some(call_sid), Some(digits)) = (non_empty(event, "CallSid"), non_empty(event, "Digits"))
    else {
        return xml(no_ack_twiml(event));
    };
    if !credentials {
        // NB: `context.getTwilioClient()` throws without IncludeCredentials, so the function fails.
        sim.log(Event::Error {
            call_sid: Some(call_sid.to_string()),
            message: format!(
                "{}: getTwilioClient() needs a service with IncludeCredentials=true",
                version.path
            ),
        });
        return (StatusCode::INTERNAL_SERVER_ERROR, "Error").into_response();
    }
    let variable = |key: &str| {
        sim.lock()
            .variables
            .iter()
            .find(|v| v.environment_sid == env.sid && v.key == key)
            .map(|v| v.value.clone())
            .filter(|v| !v.is_empty())
    };
    let service = variable("SYNC_SERVICE_SID").unwrap_or_else(|| "default".into());
    let map = variable("ACK_MAP").unwrap_or_else(|| DEFAULT_MAP.into());
    let ttl = variable("ACK_TTL_SECONDS")
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_TTL_SECONDS);
    let at = sim
        .clock
        .now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let data = json!({
        "callSid": call_sid,
        "attempt": get(event, "attempt").unwrap_or(""),
        "digits": digits,
        "at": at,
    });
    // NB: one retry, as the function makes; a taken key means the first keypress is recorded.
    let mut outcome = Ok(json!(null));
    for _ in 0..2 {
        outcome = sync::create_item(sim, &service, &map, call_sid, data.clone(), Some(ttl));
        match &outcome {
            Err((_, code, _)) if *code != sync::DUPLICATE_KEY => continue,
            _ => break,
        }
    }
    if let Err((_, code, message)) = outcome {
        if code != sync::DUPLICATE_KEY {
            sim.log(Event::Error {
                call_sid: Some(call_sid.to_string()),
                message: format!(
                    "alertcall: recording the acknowledgement of {call_sid} failed: {code} {message}"
                ),
            });
        }
    }
    xml(ack_twiml(event))
}
