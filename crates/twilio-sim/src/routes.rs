//! HTTP front: authentication, fault injection, paging, Twilio error bodies, and the v2010 API
//! (Calls, Call Events, Conferences, Participants, IncomingPhoneNumbers). Routing is by path
//! segments so `.json` suffixes and Twilio's `StartTime>` style filters are matched as sent.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use super::engine::{self, transition};
use super::ledger::Event;
use super::state::{Call, Inner, Instructions, Interrupt, Number, NUMBER_FIELDS};
use super::Fault;

pub(crate) type Form = Vec<(String, String)>;

/// The Twilio error code of an error response, for the ledger.
#[derive(Clone, Copy)]
struct ErrorCode(u32);

pub(crate) fn router(sim: Arc<Inner>) -> Router {
    Router::new().fallback(handle).with_state(sim)
}

/// A Twilio error body: `{"code", "message", "more_info", "status"}`.
pub(crate) fn error(status: u16, code: u32, message: impl Into<String>) -> Response {
    let body = json!({
        "code": code,
        "message": message.into(),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(ErrorCode(code));
    response
}

pub(crate) fn not_found(path: &str) -> Response {
    error(
        404,
        20404,
        format!("The requested resource {path} was not found"),
    )
}

pub(crate) fn missing(name: &str) -> Response {
    error(
        400,
        20001,
        format!("Missing required parameter {name} in the post body"),
    )
}

pub(crate) fn json_status(status: u16, value: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, Json(value)).into_response()
}

pub(crate) fn get<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn get_all(form: &Form, name: &str) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

pub(crate) fn parse_form(bytes: &[u8]) -> Form {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

async fn handle(State(sim): State<Arc<Inner>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let user = basic_auth(req.headers()).map(|(user, _)| user);
    let query = req.uri().query().map(str::to_string);
    let response = route(&sim, req).await;
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    sim.log(Event::Request {
        method,
        path,
        query,
        status: response.status().as_u16(),
        error_code: code,
        user,
    });
    response
}

async fn route(sim: &Arc<Inner>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_encoding_decode)
        .collect();
    let first = segments.first().map(String::as_str).unwrap_or("");
    match first {
        "twil.io" => return super::serverless::serve_asset(sim, req, &segments[1..]).await,
        "__sim" => return sim_control(sim, req, &segments[1..]).await,
        "2010-04-01" | "v1" | "sync" => {}
        _ => return not_found(&path),
    }
    if let Some(response) = fault(sim, req.method(), &path).await {
        return response;
    }
    if !authorized(sim, req.headers()) {
        let mut response = error(401, 20003, "Authenticate");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        return response;
    }
    if first == "v1" {
        return super::serverless::route(sim, req, &segments[1..]).await;
    }
    if first == "sync" {
        return match segments.get(1).map(String::as_str) {
            Some("v1") => super::sync::route(sim, req, &segments[2..]).await,
            _ => not_found(&path),
        };
    }
    let method = req.method().clone();
    let query: Form = parse_form(req.uri().query().unwrap_or("").as_bytes());
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(400, 20001, "Unreadable request body"),
    };
    let form = parse_form(&body);
    let rest: Vec<&str> = segments.iter().map(String::as_str).collect();
    match rest.as_slice() {
        ["2010-04-01", "Accounts", account, rest @ ..] => {
            if *account != sim.account() {
                return error(401, 20003, "Authenticate");
            }
            v2010(sim, &method, &path, rest, &query, &form)
        }
        _ => not_found(&path),
    }
}

fn percent_encoding_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The user name and password of a Basic `Authorization` header.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_string(), secret.to_string()))
}

fn authorized(sim: &Inner, headers: &HeaderMap) -> bool {
    let Some((user, secret)) = basic_auth(headers) else {
        return false;
    };
    if user == sim.config.account_sid {
        return secret == sim.config.auth_token;
    }
    sim.lock().api_keys.get(&user).is_some_and(|s| *s == secret)
}

/// Applies the first matching injected fault, if any.
async fn fault(sim: &Inner, method: &Method, path: &str) -> Option<Response> {
    let hit = {
        let mut st = sim.lock();
        let index = st.faults.iter().position(|f| {
            f.path_contains
                .as_ref()
                .is_none_or(|p| path.contains(p.as_str()))
                && f.method.as_ref().is_none_or(|m| m == method.as_str())
        })?;
        let rule = &mut st.faults[index];
        let fault = rule.fault.clone();
        if let Some(n) = &mut rule.remaining {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.faults.remove(index);
            }
        }
        fault
    };
    Some(match hit {
        Fault::TooManyRequests {
            retry_after_seconds,
        } => {
            let mut response = error(429, 20429, "Too Many Requests");
            if let Ok(v) = header::HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Fault::ServerError => error(500, 20500, "Internal Server Error"),
        Fault::Hang => {
            let mut stop = sim.shutdown.subscribe();
            let _ = stop.wait_for(|s| *s).await;
            error(503, 20503, "Service Unavailable")
        }
    })
}

/// Lists with Twilio's v2010 paging envelope (`PageSize`, `Page`, `next_page_uri`).
pub(crate) fn page_v2010(items: Vec<Value>, key: &str, path: &str, query: &Form) -> Value {
    let size = get(query, "PageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page = get(query, "Page")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let filters: Form = query
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Page" | "PageSize" | "PageToken"))
        .cloned()
        .collect();
    let uri = |page: usize, token: Option<usize>| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.extend_pairs(filters.iter());
        q.append_pair("PageSize", &size.to_string());
        q.append_pair("Page", &page.to_string());
        if let Some(t) = token {
            q.append_pair("PageToken", &format!("PA{t}"));
        }
        format!("{path}?{}", q.finish())
    };
    let start = page.saturating_mul(size);
    let total = items.len();
    let slice: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let next = (start + size < total).then(|| uri(page + 1, Some(start + size)));
    let previous = (page > 0).then(|| uri(page - 1, None));
    json!({
        key: slice,
        "end": (start + slice.len()).saturating_sub(1),
        "first_page_uri": uri(0, None),
        "next_page_uri": next,
        "page": page,
        "page_size": size,
        "previous_page_uri": previous,
        "start": start,
        "uri": uri(page, None),
    })
}

fn strip_json(segment: &str) -> Option<&str> {
    segment.strip_suffix(".json")
}

fn v2010(
    sim: &Arc<Inner>,
    method: &Method,
    path: &str,
    rest: &[&str],
    query: &Form,
    form: &Form,
) -> Response {
    let account = sim.account().to_string();
    let m = method.as_str();
    match (m, rest) {
        ("POST", ["Calls.json"]) => create_call(sim, form),
        ("GET", ["Calls.json"]) => {
            let st = sim.lock();
            let mut calls: Vec<&Call> =
                st.calls.iter().filter(|c| call_matches(c, query)).collect();
            calls.sort_by_key(|c| std::cmp::Reverse(c.date_created));
            let items = calls.iter().map(|c| c.json(&account)).collect();
            json_status(200, page_v2010(items, "calls", path, query))
        }
        ("GET", ["Calls", file]) => {
            match strip_json(file).and_then(|sid| sim.lock().call(sid).map(|c| c.json(&account))) {
                Some(v) => json_status(200, v),
                None => not_found(path),
            }
        }
        ("POST", ["Calls", file]) => match strip_json(file) {
            Some(sid) => update_call(sim, sid, path, form),
            None => not_found(path),
        },
        ("DELETE", ["Calls", file]) => {
            let mut st = sim.lock();
            let Some(sid) = strip_json(file) else {
                return not_found(path);
            };
            match st.calls.iter().position(|c| c.sid == sid) {
                Some(i) if st.calls[i].is_terminal() => {
                    st.calls.remove(i);
                    StatusCode::NO_CONTENT.into_response()
                }
                Some(_) => error(
                    400,
                    21220,
                    "Call is not in a terminal state; it cannot be deleted",
                ),
                None => not_found(path),
            }
        }
        ("GET", ["Calls", sid, "Events.json"]) => {
            let now = sim.clock.now();
            let st = sim.lock();
            match st.call(sid) {
                Some(call) => {
                    let readable = sim.config.immediate_call_events
                        || call.end_time.is_some_and(|ended| {
                            ended.duration_until(now).as_secs_f64()
                                >= super::CALL_EVENTS_DELAY_SECONDS
                        });
                    let events = if readable {
                        call.events.clone()
                    } else {
                        Vec::new()
                    };
                    json_status(200, page_v2010(events, "events", path, query))
                }
                None => not_found(path),
            }
        }
        ("GET", ["Conferences.json"]) => {
            let st = sim.lock();
            let mut confs = Vec::new();
            for c in &st.conferences {
                let created = super::filters::date_matches(query, "DateCreated", c.date_created);
                let updated = super::filters::date_matches(query, "DateUpdated", c.date_updated);
                let dated = match (created, updated) {
                    (Ok(created), Ok(updated)) => created && updated,
                    (Err(name), _) | (_, Err(name)) => {
                        return error(400, 20001, format!("Invalid {name}: expected YYYY-MM-DD"))
                    }
                };
                if dated
                    && get(query, "FriendlyName").is_none_or(|n| n == c.friendly_name)
                    && get(query, "Status").is_none_or(|s| s == c.status)
                {
                    confs.push(c);
                }
            }
            confs.sort_by_key(|c| std::cmp::Reverse(c.date_created));
            let items = confs.iter().map(|c| c.json(&account)).collect();
            json_status(200, page_v2010(items, "conferences", path, query))
        }
        ("GET", ["Conferences", file]) => {
            let st = sim.lock();
            match strip_json(file).and_then(|sid| st.conferences.iter().find(|c| c.sid == sid)) {
                Some(c) => json_status(200, c.json(&account)),
                None => not_found(path),
            }
        }
        ("POST", ["Conferences", file]) => {
            let Some(sid) = strip_json(file) else {
                return not_found(path);
            };
            end_conference(sim, sid, path, form)
        }
        ("GET", ["Conferences", sid, "Recordings.json"]) => {
            let st = sim.lock();
            match st.conferences.iter().find(|c| c.sid == *sid) {
                Some(c) => json_status(
                    200,
                    page_v2010(c.recordings_json(&account), "recordings", path, query),
                ),
                None => not_found(path),
            }
        }
        ("GET", ["Conferences", sid, "Participants.json"]) => {
            let st = sim.lock();
            match st.conferences.iter().find(|c| c.sid == *sid) {
                Some(c) => {
                    let items = c
                        .participants
                        .iter()
                        .map(|x| c.participant_json(x, &account))
                        .collect();
                    json_status(200, page_v2010(items, "participants", path, query))
                }
                None => not_found(path),
            }
        }
        ("GET", ["Conferences", sid, "Participants", file]) => {
            let st = sim.lock();
            let who = strip_json(file).unwrap_or("");
            let found = st.conferences.iter().find(|c| c.sid == *sid).and_then(|c| {
                c.participants
                    .iter()
                    .find(|x| x.call_sid == who || x.label.as_deref() == Some(who))
                    .map(|x| c.participant_json(x, &account))
            });
            match found {
                Some(v) => json_status(200, v),
                None => not_found(path),
            }
        }
        ("GET", ["OutgoingCallerIds.json"]) => {
            let st = sim.lock();
            let items = st
                .caller_ids
                .iter()
                .filter(|(_, number)| {
                    get(query, "PhoneNumber")
                        .is_none_or(|p| number_matches(number, &p.replace(' ', "+")))
                })
                .map(|(sid, number)| {
                    json!({
                        "sid": sid,
                        "account_sid": account,
                        "phone_number": number,
                        "friendly_name": number,
                    })
                })
                .collect();
            json_status(200, page_v2010(items, "outgoing_caller_ids", path, query))
        }
        ("GET", ["IncomingPhoneNumbers.json"]) => {
            let st = sim.lock();
            let items = st
                .numbers
                .iter()
                .filter(|n| {
                    get(query, "PhoneNumber")
                        .is_none_or(|p| number_matches(&n.phone_number, &p.replace(' ', "+")))
                })
                .filter(|n| get(query, "FriendlyName").is_none_or(|f| n.friendly_name.contains(f)))
                .map(|n| n.json(&account))
                .collect();
            json_status(
                200,
                page_v2010(items, "incoming_phone_numbers", path, query),
            )
        }
        ("POST", ["IncomingPhoneNumbers.json"]) => {
            let Some(phone) = get(form, "PhoneNumber").or(get(form, "AreaCode")) else {
                return missing("PhoneNumber");
            };
            let sid = sim.sid("PN");
            let mut number = Number::new(sid, phone, sim.clock.now());
            if let Err(response) = apply_number_fields(&mut number, form) {
                return *response;
            }
            let v = number.json(&account);
            sim.lock().numbers.push(number);
            json_status(201, v)
        }
        ("GET", ["IncomingPhoneNumbers", file]) => {
            let st = sim.lock();
            match strip_json(file).and_then(|sid| st.numbers.iter().find(|n| n.sid == sid)) {
                Some(n) => json_status(200, n.json(&account)),
                None => not_found(path),
            }
        }
        ("POST", ["IncomingPhoneNumbers", file]) => {
            let now = sim.clock.now();
            let mut st = sim.lock();
            let Some(number) =
                strip_json(file).and_then(|sid| st.numbers.iter_mut().find(|n| n.sid == sid))
            else {
                return not_found(path);
            };
            let mut updated = number.clone();
            if let Err(response) = apply_number_fields(&mut updated, form) {
                return *response;
            }
            updated.date_updated = now;
            *number = updated;
            json_status(200, number.json(&account))
        }
        ("DELETE", ["IncomingPhoneNumbers", file]) => {
            let mut st = sim.lock();
            let before = st.numbers.len();
            let sid = strip_json(file).unwrap_or("");
            st.numbers.retain(|n| n.sid != sid);
            if st.numbers.len() == before {
                not_found(path)
            } else {
                StatusCode::NO_CONTENT.into_response()
            }
        }
        _ => not_found(path),
    }
}

fn number_matches(number: &str, pattern: &str) -> bool {
    if pattern.contains('*') {
        let parts: Vec<&str> = pattern.split('*').collect();
        let mut rest = number;
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            match rest.find(part) {
                Some(at) if i > 0 || at == 0 => rest = &rest[at + part.len()..],
                _ => return false,
            }
        }
        true
    } else {
        number.contains(pattern)
    }
}

fn apply_number_fields(number: &mut Number, form: &Form) -> Result<(), Box<Response>> {
    if let Some(name) = get(form, "FriendlyName") {
        number.friendly_name = name.to_string();
    }
    for (param, field) in NUMBER_FIELDS {
        let Some(value) = get(form, param) else {
            continue;
        };
        let value = if param.ends_with("Method") {
            let upper = value.to_ascii_uppercase();
            if upper != "GET" && upper != "POST" {
                return Err(Box::new(error(
                    400,
                    21200,
                    format!("{param} must be GET or POST, not {value:?}"),
                )));
            }
            json!(upper)
        } else if *param == "VoiceCallerIdLookup" {
            json!(value == "true")
        } else {
            json!(value)
        };
        number.fields.insert(field, value);
    }
    Ok(())
}

fn valid_address(address: &str) -> bool {
    if let Some(rest) = address.strip_prefix('+') {
        return (2..=15).contains(&rest.len())
            && rest.chars().all(|c| c.is_ascii_digit())
            && !rest.starts_with('0');
    }
    let (kind, name) = address.split_once(':').unwrap_or(("", ""));
    matches!(kind, "client" | "sip") && !name.is_empty()
}

fn parse_time_filter(value: &str) -> Option<(jiff::Timestamp, bool)> {
    if let Ok(date) = value.parse::<jiff::civil::Date>() {
        return date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| (z.timestamp(), true));
    }
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Some((t, false));
    }
    jiff::fmt::rfc2822::parse(value)
        .ok()
        .map(|z| (z.timestamp(), false))
}

fn call_matches(call: &Call, query: &Form) -> bool {
    if get(query, "To").is_some_and(|t| t != call.to)
        || get(query, "From").is_some_and(|f| f != call.from)
        || get(query, "Status").is_some_and(|s| s != call.api_status())
        || get(query, "ParentCallSid").is_some()
    {
        return false;
    }
    let day = jiff::SignedDuration::from_hours(24);
    for (key, value) in query {
        let Some((t, is_date)) = parse_time_filter(value) else {
            continue;
        };
        // NB: pessimistic, as Twilio filters on start_time: a call still queued has none, so
        // no StartTime filter finds it. A lookup must ask for queued calls by status.
        let Some(started) = call.start_time else {
            if key.starts_with("StartTime") {
                return false;
            }
            continue;
        };
        let ok = match key.as_str() {
            "StartTime>" => started >= t,
            "StartTime<" if is_date => started < t + day,
            "StartTime<" => started <= t,
            "StartTime" if is_date => started >= t && started < t + day,
            "StartTime" => started == t,
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn create_call(sim: &Arc<Inner>, form: &Form) -> Response {
    let Some(to) = get(form, "To").filter(|s| !s.is_empty()) else {
        return error(400, 21201, "No 'To' number is specified");
    };
    let Some(from) = get(form, "From").filter(|s| !s.is_empty()) else {
        return error(400, 21213, "No 'From' number is specified");
    };
    let method = get(form, "Method").unwrap_or("POST").to_ascii_uppercase();
    let instructions = match (
        get(form, "Url"),
        get(form, "Twiml"),
        get(form, "ApplicationSid"),
    ) {
        // NB: with both, Twilio ignores Twiml (spec wording on Create).
        (Some(url), _, _) if !url.is_empty() => Instructions::Url {
            url: url.to_string(),
            method,
        },
        (_, Some(twiml), _) if !twiml.is_empty() => Instructions::Twiml(twiml.to_string()),
        (_, _, Some(_)) => {
            return error(
                400,
                21205,
                "ApplicationSid is not supported by the simulator; use Url or Twiml",
            )
        }
        _ => return error(400, 21205, "Url parameter is required."),
    };
    if let Instructions::Twiml(text) = &instructions {
        if text.chars().count() > 4000 {
            return error(400, 21205, "Twiml is longer than 4000 characters");
        }
    }
    if let Some(code) = sim.lock().invalid_numbers.get(to).copied() {
        let message = match code {
            21214 => "'To' phone number cannot be reached".to_string(),
            21217 => "Phone number does not appear to be valid".to_string(),
            _ => format!("Invalid 'To' Phone Number: {to}"),
        };
        return error(400, code, message);
    }
    if !valid_address(to) {
        return error(400, 21211, format!("Invalid 'To' Phone Number: {to}"));
    }
    if !valid_address(from) {
        return error(400, 21212, format!("Invalid 'From' Phone Number: {from}"));
    }
    let timeout = match get(form, "Timeout").map(|t| t.parse::<u32>()) {
        None => 60.0,
        Some(Ok(t)) => f64::from(t.min(600)),
        Some(Err(_)) => return error(400, 20001, "Timeout must be an integer number of seconds"),
    };
    let time_limit = get(form, "TimeLimit")
        .and_then(|t| t.parse::<u32>().ok())
        .map_or(14_400.0, f64::from);
    let mut events = get_all(form, "StatusCallbackEvent");
    if events.is_empty() {
        events.push("completed".into());
    }
    let now = sim.clock.now();
    let sid = sim.sid("CA");
    let json = {
        let mut st = sim.lock();
        let queued_ahead = st.calls.iter().filter(|c| c.status == "queued").count() as f64;
        let phone_number_sid = st
            .numbers
            .iter()
            .find(|n| n.phone_number == from)
            .map(|n| n.sid.clone());
        let call = Call {
            sid: sid.clone(),
            from: from.to_string(),
            to: to.to_string(),
            direction: "outbound-api".into(),
            status: "queued".into(),
            date_created: now,
            date_updated: now,
            start_time: None,
            answered_at: None,
            end_time: None,
            answered_by: None,
            machine_detection: get(form, "MachineDetection").is_some_and(|m| !m.is_empty()),
            timeout,
            time_limit,
            instructions,
            status_callback: get(form, "StatusCallback")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            status_callback_method: get(form, "StatusCallbackMethod")
                .unwrap_or("POST")
                .to_ascii_uppercase(),
            status_callback_events: events,
            record: get(form, "Record") == Some("true"),
            sequence: 0,
            phone_number_sid,
            queue_time_ms: (queued_ahead / sim.config.calls_per_second * 1000.0) as u64,
            events: Vec::new(),
            control: None,
        };
        let json = call.json(sim.account());
        st.calls.push(call);
        Inner::record(
            &mut st,
            now,
            Event::CallCreated {
                call_sid: sid.clone(),
                from: from.to_string(),
                to: to.to_string(),
                direction: "outbound-api".into(),
            },
        );
        Inner::record(
            &mut st,
            now,
            Event::CallStatus {
                call_sid: sid.clone(),
                status: "queued".into(),
            },
        );
        json
    };
    let _ = sim.dispatch.send(sid);
    json_status(201, json)
}

fn update_call(sim: &Arc<Inner>, sid: &str, path: &str, form: &Form) -> Response {
    let (status_now, exists) = {
        let st = sim.lock();
        match st.call(sid) {
            Some(c) => (c.status.clone(), true),
            None => (String::new(), false),
        }
    };
    if !exists {
        return not_found(path);
    }
    if let Some(requested) = get(form, "Status") {
        let target = match (requested, status_now.as_str()) {
            ("canceled" | "completed", "queued" | "initiated" | "ringing") => Some("canceled"),
            ("completed", "in-progress") => Some("completed"),
            ("canceled" | "completed", _) => None,
            _ => {
                return error(
                    400,
                    20001,
                    format!("Invalid Status {requested:?}: use canceled or completed"),
                )
            }
        };
        if let Some(target) = target {
            transition(sim, sid, target);
        }
    } else {
        let method = get(form, "Method").unwrap_or("POST").to_ascii_uppercase();
        let instructions = match (get(form, "Url"), get(form, "Twiml")) {
            (Some(url), _) => Some(Instructions::Url {
                url: url.to_string(),
                method,
            }),
            (None, Some(twiml)) => Some(Instructions::Twiml(twiml.to_string())),
            _ => None,
        };
        if let Some(instructions) = instructions {
            let mut st = sim.lock();
            let Some(call) = st.call_mut(sid) else {
                return not_found(path);
            };
            match call.status.as_str() {
                "in-progress" => {
                    if let Some(control) = &call.control {
                        let _ = control.send(Interrupt::Redirect(instructions));
                    }
                }
                "queued" | "initiated" | "ringing" => call.instructions = instructions,
                _ => return error(400, 21220, "Call is not in-progress. Cannot redirect."),
            }
        }
        if let Some(cb) = get(form, "StatusCallback") {
            if let Some(call) = sim.lock().call_mut(sid) {
                call.status_callback = Some(cb.to_string()).filter(|s| !s.is_empty());
            }
        }
    }
    let st = sim.lock();
    match st.call(sid) {
        Some(c) => json_status(200, c.json(sim.account())),
        None => not_found(path),
    }
}

fn end_conference(sim: &Arc<Inner>, sid: &str, path: &str, form: &Form) -> Response {
    let now = sim.clock.now();
    let mut st = sim.lock();
    let Some(conf) = st.conferences.iter_mut().find(|c| c.sid == sid) else {
        return not_found(path);
    };
    match get(form, "Status") {
        Some("completed") if conf.status != "completed" => {
            conf.status = "completed".into();
            conf.date_updated = now;
            conf.reason_conference_ended = Some("conference-ended-via-api".into());
            let _ = conf.ended.send(true);
            let event = Event::ConferenceStatus {
                conference_sid: conf.sid.clone(),
                friendly_name: conf.friendly_name.clone(),
                status: "completed".into(),
            };
            let v = conf.json(sim.account());
            Inner::record(&mut st, now, event);
            json_status(200, v)
        }
        Some("completed") | None => json_status(200, conf.json(sim.account())),
        Some(other) => error(
            400,
            20001,
            format!("Invalid Status {other:?}: use completed"),
        ),
    }
}

/// `/__sim/...`: the simulator's own endpoints for standalone use.
async fn sim_control(sim: &Arc<Inner>, req: Request, rest: &[String]) -> Response {
    let method = req.method().clone();
    let body: Bytes = axum::body::to_bytes(req.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (method.as_str(), rest.as_slice()) {
        ("GET", ["ledger"]) => {
            let entries = sim.lock().ledger.clone();
            json_status(200, json!({ "entries": entries }))
        }
        ("POST", ["dial_in"]) => {
            let form = parse_form(&body);
            let (Some(from), Some(to)) = (get(&form, "From"), get(&form, "To")) else {
                return missing("From and To");
            };
            match engine::dial_in(sim, from, to) {
                Ok(sid) => json_status(201, json!({ "call_sid": sid })),
                Err(e) => error(404, 20404, e.to_string()),
            }
        }
        ("PUT", ["script"]) => {
            match super::script::Script::from_yaml(&String::from_utf8_lossy(&body)) {
                Ok(script) => {
                    sim.lock().script = script;
                    json_status(200, json!({ "ok": true }))
                }
                Err(e) => error(400, 20001, e.to_string()),
            }
        }
        ("POST", ["faults"]) => {
            let form = parse_form(&body);
            let fault = match get(&form, "Fault") {
                Some("429") => Fault::TooManyRequests {
                    retry_after_seconds: get(&form, "RetryAfter")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1),
                },
                Some("500") => Fault::ServerError,
                Some("hang") => Fault::Hang,
                _ => return error(400, 20001, "Fault must be 429, 500 or hang"),
            };
            sim.lock().faults.push(super::state::FaultRule {
                fault,
                path_contains: get(&form, "Path").map(str::to_string),
                method: get(&form, "Method").map(str::to_ascii_uppercase),
                remaining: get(&form, "Times").and_then(|s| s.parse().ok()),
            });
            json_status(201, json!({ "ok": true }))
        }
        ("DELETE", ["faults"]) => {
            sim.lock().faults.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["invalid_numbers"]) => {
            let form = parse_form(&body);
            let code = get(&form, "Code").and_then(|c| c.parse::<u32>().ok());
            match (get(&form, "Number"), code) {
                (Some(n), Some(c @ (21211 | 21214 | 21217))) => {
                    sim.lock().invalid_numbers.insert(n.to_string(), c);
                    json_status(201, json!({ "ok": true }))
                }
                _ => error(
                    400,
                    20001,
                    "Number and Code (21211, 21214 or 21217) are required",
                ),
            }
        }
        _ => not_found(&format!("/__sim/{}", rest.join("/"))),
    }
}
