//! The call engine: CPS/concurrency pacing, one task per call running its TwiML, conference
//! rooms, and the signed webhooks (status callbacks, TwiML fetches, Gather/Dial actions).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::ledger::Event;
use super::script::{Outcome, Recipient};
use super::state::{rfc2822, Call, Conference, Inner, Instructions, Interrupt, Participant};
use super::twiml::{self, ConferenceAttrs, DialTarget, Verb};
use super::SimError;
use crate::signature;

type Params = Vec<(String, String)>;

fn p(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// Starts queued outbound calls no faster than the CPS and within the concurrency cap.
pub(crate) async fn dispatcher(sim: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<String>) {
    let mut stop = sim.shutdown.subscribe();
    let mut next_slot: Option<Timestamp> = None;
    let interval = SignedDuration::from_secs_f64(1.0 / sim.config.calls_per_second);
    loop {
        let sid = tokio::select! {
            sid = queue.recv() => match sid { Some(sid) => sid, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Some(cap) = sim.config.max_concurrent_calls {
            loop {
                let ended = sim.call_ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                {
                    let st = sim.lock();
                    let still_queued = st.call(&sid).is_some_and(|c| c.status == "queued");
                    if !still_queued || st.active_calls() < cap {
                        break;
                    }
                }
                tokio::select! {
                    _ = ended => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
        if let Some(slot) = next_slot {
            // NB: loop rather than trust one sleep, so float rounding can never start a call a
            // nanosecond before its slot.
            loop {
                let wait = sim.clock.now().duration_until(slot).as_secs_f64();
                if wait <= 0.0 {
                    break;
                }
                let real = sim.clock.real(wait) + std::time::Duration::from_micros(100);
                tokio::select! {
                    _ = tokio::time::sleep(real) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut st = sim.lock();
            match st.call_mut(&sid) {
                Some(call) if call.status == "queued" => call.control = Some(tx),
                // Canceled while queued: it never uses a slot.
                _ => continue,
            }
        }
        // NB: the next slot counts from the recorded start, so starts in the ledger are at least
        // 1/CPS apart even when this task wakes late.
        if let Some(started) = transition(&sim, &sid, "initiated") {
            next_slot = Some(started + interval);
            tokio::spawn(run_outbound(sim.clone(), sid, rx));
        }
    }
}

/// Moves a call to `status`, stamps it, records it and sends the status callback it subscribed
/// to. Returns the simulated time of the change, or none if the call was already over.
pub(crate) fn transition(sim: &Arc<Inner>, sid: &str, status: &str) -> Option<Timestamp> {
    let now = sim.clock.now();
    let account = sim.account().to_string();
    let (callback, terminal) = {
        let mut st = sim.lock();
        let call = st.call_mut(sid)?;
        if call.is_terminal() {
            return None;
        }
        let was_queued = call.status == "queued";
        call.status = status.to_string();
        call.date_updated = now;
        match status {
            "initiated" => call.start_time = Some(now),
            "in-progress" => call.answered_at = Some(now),
            _ => {}
        }
        let terminal = call.is_terminal();
        if terminal {
            call.end_time = Some(now);
            call.control = None;
        }
        let event = match status {
            "in-progress" => "answered",
            _ if terminal => "completed",
            other => other,
        };
        // NB: a call canceled while still queued fires no status callbacks (Twilio docs).
        let subscribed = call.status_callback.is_some()
            && call.status_callback_events.iter().any(|e| e == event)
            && !(was_queued && terminal);
        let callback = if subscribed {
            let mut params = voice_params(call, &account);
            params.push(p("Timestamp", rfc2822(now)));
            params.push(p("CallbackSource", "call-progress-events"));
            params.push(p("SequenceNumber", call.sequence.to_string()));
            call.sequence += 1;
            if terminal {
                let seconds = match call.answered_at {
                    Some(a) => a.duration_until(now).as_secs().max(0),
                    None => 0,
                };
                params.push(p("CallDuration", seconds.to_string()));
                if status == "completed" {
                    params.push(p("Duration", ((seconds + 59) / 60).to_string()));
                }
                let sip = match status {
                    "completed" => "200",
                    "busy" => "486",
                    "failed" => "404",
                    _ => "487",
                };
                params.push(p("SipResponseCode", sip));
            }
            call.status_callback
                .clone()
                .map(|url| (url, call.status_callback_method.clone(), params))
        } else {
            None
        };
        let recording = (terminal && call.record && call.answered_at.is_some()).then(|| {
            (call
                .answered_at
                .map(|a| a.duration_until(now).as_secs().max(0))
                .unwrap_or(0),)
        });
        Inner::record(
            &mut st,
            now,
            Event::CallStatus {
                call_sid: sid.to_string(),
                status: status.to_string(),
            },
        );
        let callback = match (callback, recording) {
            (Some((url, method, mut params)), Some((seconds,))) => {
                let rsid = sim.sid("RE");
                let rurl = recording_url(sim, &rsid);
                Inner::record(
                    &mut st,
                    now,
                    Event::Recording {
                        recording_sid: rsid.clone(),
                        url: rurl.clone(),
                        call_sid: Some(sid.to_string()),
                        conference_sid: None,
                    },
                );
                params.push(p("RecordingUrl", rurl));
                params.push(p("RecordingSid", rsid));
                params.push(p("RecordingDuration", seconds.to_string()));
                Some((url, method, params))
            }
            (callback, _) => callback,
        };
        (callback, terminal)
    };
    if terminal {
        sim.call_ended.notify_waiters();
    }
    if let Some((url, method, params)) = callback {
        let sim = sim.clone();
        let sid = sid.to_string();
        tokio::spawn(async move {
            webhook(&sim, Some(&sid), "status-callback", &url, &method, params).await;
        });
    }
    Some(now)
}

fn recording_url(sim: &Inner, recording_sid: &str) -> String {
    format!(
        "{}/2010-04-01/Accounts/{}/Recordings/{recording_sid}",
        sim.origin,
        sim.account()
    )
}

/// The standard parameters of a voice webhook.
fn voice_params(call: &Call, account: &str) -> Params {
    let mut params = vec![
        p("CallSid", &call.sid),
        p("AccountSid", account),
        p("From", &call.from),
        p("To", &call.to),
        p("Caller", &call.from),
        p("Called", &call.to),
        p("CallStatus", &call.status),
        p("ApiVersion", "2010-04-01"),
        p("Direction", &call.direction),
    ];
    if let Some(by) = &call.answered_by {
        params.push(p("AnsweredBy", by));
    }
    params
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Makes a signed webhook request (loopback only), records it in the call's Events and the
/// ledger, and returns the response status and body.
pub(crate) async fn webhook(
    sim: &Arc<Inner>,
    call_sid: Option<&str>,
    purpose: &str,
    url: &str,
    method: &str,
    params: Params,
) -> Option<(u16, String)> {
    let sent_at = sim.clock.now();
    let real_start = std::time::Instant::now();
    let parsed = url::Url::parse(url);
    let outcome: Result<(String, u16, String, String), String> = match parsed {
        Err(e) => Err(format!("invalid URL {url:?}: {e}")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Err(format!("unsupported URL scheme in {url:?}"))
        }
        Ok(u) if !is_loopback(&u) => Err(format!(
            "not contacted: {url} is not a loopback URL (the simulator never leaves the machine)"
        )),
        Ok(mut u) => {
            let request = if method == "GET" {
                u.query_pairs_mut().extend_pairs(params.iter());
                let full = u.to_string();
                let signature = signature::compute(&sim.config.auth_token, &full, &[]);
                (
                    full.clone(),
                    sim.http.get(full).header("X-Twilio-Signature", signature),
                )
            } else {
                let signature = signature::compute(&sim.config.auth_token, url, &params);
                (
                    url.to_string(),
                    sim.http
                        .post(url)
                        .header("X-Twilio-Signature", signature)
                        .form(&params),
                )
            };
            let (full, builder) = request;
            let sent = builder
                .header("User-Agent", "TwilioProxy/1.1")
                .header("I-Twilio-Idempotency-Token", sim.sid("ID"))
                .send()
                .await;
            match sent {
                Err(e) => Err(format!("request to {full} failed: {e}")),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let content_type = response
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    match response.text().await {
                        Ok(body) => Ok((full, status, content_type, body)),
                        Err(e) => Err(format!("reading the response of {full} failed: {e}")),
                    }
                }
            }
        }
    };
    let duration_ms = real_start.elapsed().as_millis() as u64;
    let param_map: BTreeMap<String, String> = params.iter().cloned().collect();
    let mut st = sim.lock();
    let (status, error) = match &outcome {
        Ok((_, status, _, _)) => (Some(*status), None),
        Err(e) => (None, Some(e.clone())),
    };
    if let Some(sid) = call_sid {
        let snake: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(k, v)| (snake_case(k), json!(v)))
            .collect();
        let response = match &outcome {
            Ok((_, status, content_type, body)) => json!({
                "response_code": status,
                "request_duration": duration_ms,
                "content_type": content_type,
                "response_body": body,
                "date_created": rfc2822(sim.clock.now()),
            }),
            Err(e) => json!({
                "response_code": null,
                "request_duration": duration_ms,
                "content_type": null,
                "response_body": e,
                "date_created": rfc2822(sim.clock.now()),
            }),
        };
        let requested = match &outcome {
            Ok((full, ..)) => full.clone(),
            Err(_) => url.to_string(),
        };
        if let Some(call) = st.call_mut(sid) {
            call.events.push(json!({
                "request": {"method": method, "url": requested, "parameters": snake},
                "response": response,
            }));
        }
    }
    Inner::record(
        &mut st,
        sent_at,
        Event::Webhook {
            call_sid: call_sid.map(str::to_string),
            purpose: purpose.to_string(),
            method: method.to_string(),
            url: url.to_string(),
            params: param_map,
            response_status: status,
            error,
        },
    );
    outcome.ok().map(|(_, status, _, body)| (status, body))
}

/// `CallStatus` -> `call_status`, as Call Events show request parameters.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What to execute next.
enum Next {
    Inline(String),
    Fetch {
        url: String,
        method: String,
        purpose: &'static str,
        extra: Params,
    },
}

impl From<Instructions> for Next {
    fn from(i: Instructions) -> Next {
        match i {
            Instructions::Twiml(t) => Next::Inline(t),
            Instructions::Url { url, method } => Next::Fetch {
                url,
                method,
                purpose: "voice-url",
                extra: Vec::new(),
            },
        }
    }
}

/// How a document ended.
enum Step {
    /// Out of verbs, `<Hangup>`, or the person hung up: the call completes.
    End,
    /// Continue with another document.
    Goto(Next),
    /// Ended through the API or shutdown; the status is already set.
    Stopped,
}

struct Run {
    sim: Arc<Inner>,
    sid: String,
    rx: mpsc::UnboundedReceiver<Interrupt>,
    stop: watch::Receiver<bool>,
    who: Recipient,
    /// When the person hangs up on their own (simulated time), once they pressed keys.
    hangup_at: Option<Timestamp>,
}

impl Run {
    /// Simulated seconds until the person hangs up on their own, if they will.
    fn until_hangup(&self) -> Option<f64> {
        self.hangup_at.map(|at| {
            self.sim
                .clock
                .now()
                .duration_until(at)
                .as_secs_f64()
                .max(0.0)
        })
    }

    /// Waits `seconds` of simulated time unless the call is interrupted.
    async fn wait(&mut self, seconds: f64) -> Result<(), Interrupt> {
        let hangs_up = self.until_hangup().is_some_and(|left| left <= seconds);
        let seconds = self
            .until_hangup()
            .map_or(seconds, |left| left.min(seconds));
        let real = self.sim.clock.real(seconds);
        tokio::select! {
            _ = tokio::time::sleep(real) => if hangs_up { Err(Interrupt::PersonHungUp) } else { Ok(()) },
            msg = self.rx.recv() => Err(msg.unwrap_or(Interrupt::Hangup)),
            _ = self.stop.wait_for(|s| *s) => Err(Interrupt::Hangup),
        }
    }

    fn error(&self, message: String) {
        tracing::warn!(call_sid = %self.sid, %message, "simulated call error");
        self.sim.log(Event::Error {
            call_sid: Some(self.sid.clone()),
            message,
        });
    }

    fn params(&self) -> Params {
        let st = self.sim.lock();
        st.call(&self.sid)
            .map(|c| voice_params(c, self.sim.account()))
            .unwrap_or_default()
    }
}

async fn run_outbound(sim: Arc<Inner>, sid: String, rx: mpsc::UnboundedReceiver<Interrupt>) {
    let (to, timeout, amd, instructions) = {
        let st = sim.lock();
        let Some(call) = st.call(&sid) else { return };
        (
            call.to.clone(),
            call.timeout,
            call.machine_detection,
            call.instructions.clone(),
        )
    };
    let who = sim.lock().script.for_address(&to).clone();
    let stop = sim.shutdown.subscribe();
    let mut run = Run {
        sim: sim.clone(),
        sid: sid.clone(),
        rx,
        stop,
        who: who.clone(),
        hangup_at: None,
    };
    if let Err(interrupt) = run.wait(1.0).await {
        return stopped(&sim, &sid, interrupt);
    }
    match who.outcome {
        Outcome::Busy => {
            transition(&sim, &sid, "busy");
            return;
        }
        Outcome::Failed => {
            transition(&sim, &sid, "failed");
            return;
        }
        _ => {}
    }
    transition(&sim, &sid, "ringing");
    let answers = who.outcome != Outcome::NoAnswer && who.answer_after < timeout;
    let ring = if answers { who.answer_after } else { timeout };
    if let Err(interrupt) = run.wait(ring).await {
        return stopped(&sim, &sid, interrupt);
    }
    if !answers {
        transition(&sim, &sid, "no-answer");
        return;
    }
    if amd {
        let by = if who.outcome == Outcome::Voicemail {
            "machine_start"
        } else {
            "human"
        };
        if let Some(call) = sim.lock().call_mut(&sid) {
            call.answered_by = Some(by.to_string());
        }
    }
    transition(&sim, &sid, "in-progress");
    execute(run, instructions.into()).await;
}

/// An interrupt before the call was answered: a redirect of a ringing call just replaces its
/// instructions (not supported here), a hangup already set the status.
fn stopped(sim: &Arc<Inner>, sid: &str, interrupt: Interrupt) {
    if let Interrupt::Redirect(_) = interrupt {
        sim.log(Event::Error {
            call_sid: Some(sid.to_string()),
            message: "redirect of a call that is not in progress is ignored".into(),
        });
    }
}

/// Runs the call's documents until it ends, then completes it.
async fn execute(mut run: Run, first: Next) {
    let mut next = Some(first);
    while let Some(current) = next.take() {
        let (verbs, base) = match load(&run, current).await {
            Ok(loaded) => loaded,
            Err(message) => {
                run.error(message);
                break;
            }
        };
        match exec(&mut run, verbs, base).await {
            Step::End => break,
            Step::Goto(n) => next = Some(n),
            Step::Stopped => return,
        }
    }
    transition(&run.sim, &run.sid, "completed");
}

async fn load(run: &Run, next: Next) -> Result<(Vec<Verb>, Option<String>), String> {
    match next {
        Next::Inline(text) => twiml::parse(&text)
            .map(|v| (v, None))
            .map_err(|e| format!("inline TwiML: {e}")),
        Next::Fetch {
            url,
            method,
            purpose,
            extra,
        } => {
            let mut params = run.params();
            params.extend(extra);
            let (status, body) = webhook(&run.sim, Some(&run.sid), purpose, &url, &method, params)
                .await
                .ok_or_else(|| format!("11200: HTTP retrieval failure for {url}"))?;
            if !(200..300).contains(&status) {
                return Err(format!("11200: {url} answered HTTP {status}"));
            }
            twiml::parse(&body)
                .map(|v| (v, Some(url.clone())))
                .map_err(|e| format!("12100: document from {url}: {e}"))
        }
    }
}

fn resolve(base: Option<&str>, target: &str) -> Option<String> {
    match url::Url::parse(target) {
        Ok(u) => Some(u.to_string()),
        Err(_) => base
            .and_then(|b| url::Url::parse(b).ok())
            .and_then(|b| b.join(target).ok())
            .map(|u| u.to_string()),
    }
}

fn interrupted(i: Interrupt) -> Step {
    match i {
        Interrupt::Hangup => Step::Stopped,
        Interrupt::PersonHungUp => Step::End,
        Interrupt::Redirect(instructions) => Step::Goto(instructions.into()),
    }
}

async fn play(run: &mut Run, verb: &Verb) -> Result<(), Interrupt> {
    match verb {
        Verb::Say { text, loops } => {
            run.wait(twiml::speech_seconds(text) * f64::from(*loops))
                .await
        }
        // NB: audio is not fetched; a clip counts as five seconds.
        Verb::Play { loops, .. } => run.wait(5.0 * f64::from(*loops)).await,
        Verb::Pause { length } => run.wait(*length).await,
        _ => Ok(()),
    }
}

async fn exec(run: &mut Run, verbs: Vec<Verb>, base: Option<String>) -> Step {
    for verb in verbs {
        match verb {
            Verb::Say { .. } | Verb::Play { .. } | Verb::Pause { .. } => {
                if let Err(i) = play(run, &verb).await {
                    return interrupted(i);
                }
            }
            Verb::Hangup | Verb::Reject => return Step::End,
            Verb::Redirect { url, method } => {
                return match resolve(base.as_deref(), &url) {
                    Some(url) => Step::Goto(Next::Fetch {
                        url,
                        method,
                        purpose: "redirect",
                        extra: Vec::new(),
                    }),
                    None => {
                        run.error(format!(
                            "<Redirect> to a relative URL {url:?} without a document URL"
                        ));
                        Step::End
                    }
                };
            }
            Verb::Gather {
                action,
                method,
                num_digits,
                timeout,
                finish_on_key,
                action_on_empty_result,
                prompt,
            } => {
                for inner in &prompt {
                    if let Err(i) = play(run, inner).await {
                        return interrupted(i);
                    }
                }
                let press = match (&run.who.press, run.who.outcome) {
                    (Some(keys), Outcome::Answer) => Some(keys.clone()),
                    _ => None,
                };
                let wait = if press.is_some() { 1.0 } else { timeout };
                if let Err(i) = run.wait(wait).await {
                    return interrupted(i);
                }
                let (digits, finished_on) = match &press {
                    Some(keys) => collect_digits(keys, num_digits, &finish_on_key),
                    None => (String::new(), String::new()),
                };
                if digits.is_empty() && !action_on_empty_result {
                    continue;
                }
                if !digits.is_empty() {
                    run.sim.log(Event::Digits {
                        call_sid: run.sid.clone(),
                        digits: digits.clone(),
                    });
                    if let Some(after) = run.who.hangup_after_press {
                        run.hangup_at =
                            Some(run.sim.clock.now() + SignedDuration::from_secs_f64(after));
                    }
                }
                let target = action.as_deref().map(|a| resolve(base.as_deref(), a));
                let url = match target {
                    Some(Some(url)) => url,
                    None if base.is_some() => base.clone().unwrap_or_default(),
                    _ => {
                        run.error("<Gather> action is missing or relative in inline TwiML; Twilio needs an absolute URL".into());
                        return Step::End;
                    }
                };
                return Step::Goto(Next::Fetch {
                    url,
                    method,
                    purpose: "gather-action",
                    extra: vec![p("Digits", digits), p("FinishedOnKey", finished_on)],
                });
            }
            Verb::Dial {
                action,
                method,
                record,
                target,
                ..
            } => {
                let dial_status = match target {
                    DialTarget::Conference(attrs) => {
                        match conference(run, *attrs, record != "do-not-record").await {
                            // NB: Twilio reports `answered` for a <Dial><Conference> that connected.
                            Ok(true) => "answered",
                            // The person hung up while in the room.
                            Ok(false) => return Step::End,
                            Err(i) => return interrupted(i),
                        }
                    }
                    DialTarget::Endpoints(to) => {
                        run.error(format!(
                            "<Dial> to {} is not simulated (only <Conference>)",
                            to.join(", ")
                        ));
                        "failed"
                    }
                };
                if let Some(action) = action {
                    let Some(url) = resolve(base.as_deref(), &action) else {
                        run.error(format!(
                            "<Dial> action {action:?} is relative in inline TwiML"
                        ));
                        return Step::End;
                    };
                    return Step::Goto(Next::Fetch {
                        url,
                        method,
                        purpose: "dial-action",
                        extra: vec![p("DialCallStatus", dial_status)],
                    });
                }
            }
        }
    }
    Step::End
}

/// Keys a `<Gather>` collects from what the person presses, and the finishing key if used.
fn collect_digits(keys: &str, num_digits: Option<usize>, finish_on_key: &str) -> (String, String) {
    let mut digits = String::new();
    for c in keys.chars() {
        if !finish_on_key.is_empty() && finish_on_key.contains(c) {
            return (digits, c.to_string());
        }
        digits.push(c);
        if num_digits.is_some_and(|n| digits.chars().count() >= n) {
            break;
        }
    }
    (digits, String::new())
}

/// Joins the room; returns Ok(true) when the conference ended around the call, Ok(false) when
/// the person hung up (their script's `hangupAfter`, or the call's time limit).
async fn conference(
    run: &mut Run,
    attrs: ConferenceAttrs,
    dial_record: bool,
) -> Result<bool, Interrupt> {
    // NB: the person who already hung up never reaches the room.
    if run.until_hangup().is_some_and(|left| left <= 0.0) {
        return Ok(false);
    }
    let Some((conf_sid, mut ended_rx)) = join(&run.sim, &run.sid, &attrs, dial_record) else {
        return Ok(true);
    };
    let stay = {
        let st = run.sim.lock();
        let limit = st.call(&run.sid).map(|c| c.time_limit).unwrap_or(14_400.0);
        let stay = run.who.hangup_after.map_or(limit, |h| h.min(limit));
        run.until_hangup().map_or(stay, |left| left.min(stay))
    };
    let real = run.sim.clock.real(stay);
    let outcome = tokio::select! {
        _ = tokio::time::sleep(real) => Ok(false),
        _ = ended_rx.wait_for(|e| *e) => Ok(true),
        msg = run.rx.recv() => Err(msg.unwrap_or(Interrupt::Hangup)),
        _ = run.stop.wait_for(|s| *s) => Err(Interrupt::Hangup),
    };
    leave(&run.sim, &conf_sid, &run.sid);
    outcome
}

fn conference_event(
    sim: &Arc<Inner>,
    conf: &mut Conference,
    event: &str,
    call_sid: &str,
    now: Timestamp,
) -> Option<(String, String, Params)> {
    let (url, method, events) = conf.status_callback.clone()?;
    let short = event
        .strip_prefix("conference-")
        .or_else(|| event.strip_prefix("participant-"))
        .unwrap_or(event);
    if !events.iter().any(|e| e == short) {
        return None;
    }
    let mut params = vec![
        p("ConferenceSid", &conf.sid),
        p("FriendlyName", &conf.friendly_name),
        p("AccountSid", sim.account()),
        p("SequenceNumber", conf.sequence.to_string()),
        p("Timestamp", rfc2822(now)),
        p("StatusCallbackEvent", event),
    ];
    conf.sequence += 1;
    if let Some(part) = conf.participants.iter().find(|x| x.call_sid == call_sid) {
        params.extend([
            p("CallSid", call_sid),
            p("Muted", part.muted.to_string()),
            p("Hold", "false"),
            p("Coaching", "false"),
            p(
                "EndConferenceOnExit",
                part.end_conference_on_exit.to_string(),
            ),
            p(
                "StartConferenceOnEnter",
                part.start_conference_on_enter.to_string(),
            ),
        ]);
        if let Some(label) = &part.label {
            params.push(p("ParticipantLabel", label));
        }
    } else if event == "participant-leave" {
        params.push(p("CallSid", call_sid));
    }
    if event == "conference-end" {
        if let Some(ending) = &conf.call_sid_ending_conference {
            params.push(p("CallSidEndingConference", ending));
        }
        if let Some(reason) = &conf.reason_conference_ended {
            params.push(p("ReasonConferenceEnded", reason));
        }
    }
    Some((url, method, params))
}

fn send_all(
    sim: &Arc<Inner>,
    call_sid: &str,
    purpose: &'static str,
    hooks: Vec<(String, String, Params)>,
) {
    for (url, method, params) in hooks {
        let sim = sim.clone();
        let sid = call_sid.to_string();
        tokio::spawn(async move {
            webhook(&sim, Some(&sid), purpose, &url, &method, params).await;
        });
    }
}

fn join(
    sim: &Arc<Inner>,
    call_sid: &str,
    attrs: &ConferenceAttrs,
    dial_record: bool,
) -> Option<(String, watch::Receiver<bool>)> {
    let now = sim.clock.now();
    let mut hooks = Vec::new();
    let result = {
        let mut st = sim.lock();
        let index = match st
            .conferences
            .iter()
            .position(|c| c.friendly_name == attrs.name && c.status != "completed")
        {
            Some(i) => i,
            None => {
                let sid = sim.sid("CF");
                st.conferences.push(Conference {
                    sid: sid.clone(),
                    friendly_name: attrs.name.clone(),
                    status: "init".into(),
                    date_created: now,
                    date_updated: now,
                    participants: Vec::new(),
                    reason_conference_ended: None,
                    call_sid_ending_conference: None,
                    record: attrs.record == "record-from-start" || dial_record,
                    recording: None,
                    status_callback: attrs.status_callback.clone().map(|u| {
                        (
                            u,
                            attrs.status_callback_method.clone(),
                            attrs.status_callback_event.clone(),
                        )
                    }),
                    recording_status_callback: attrs
                        .recording_status_callback
                        .clone()
                        .map(|u| (u, attrs.recording_status_callback_method.clone())),
                    sequence: 0,
                    ended: watch::channel(false).0,
                });
                Inner::record(
                    &mut st,
                    now,
                    Event::ConferenceStatus {
                        conference_sid: sid,
                        friendly_name: attrs.name.clone(),
                        status: "init".into(),
                    },
                );
                st.conferences.len() - 1
            }
        };
        let conf = &mut st.conferences[index];
        if attrs.participant_label.as_ref().is_some_and(|l| {
            conf.participants
                .iter()
                .any(|x| x.label.as_ref() == Some(l))
        }) {
            let message = format!(
                "16025: duplicate participantLabel in conference {}",
                attrs.name
            );
            Inner::record(
                &mut st,
                now,
                Event::Error {
                    call_sid: Some(call_sid.to_string()),
                    message,
                },
            );
            return None;
        }
        conf.participants.push(Participant {
            call_sid: call_sid.to_string(),
            label: attrs.participant_label.clone(),
            date_created: now,
            end_conference_on_exit: attrs.end_conference_on_exit,
            start_conference_on_enter: attrs.start_conference_on_enter,
            muted: attrs.muted,
        });
        conf.date_updated = now;
        let mut events = vec![Event::ParticipantJoined {
            conference_sid: conf.sid.clone(),
            friendly_name: conf.friendly_name.clone(),
            call_sid: call_sid.to_string(),
            wait_url: attrs.wait_url.clone(),
        }];
        hooks.extend(conference_event(
            sim,
            conf,
            "participant-join",
            call_sid,
            now,
        ));
        let starts = conf.status == "init"
            && conf.participants.len() >= 2
            && conf
                .participants
                .iter()
                .any(|x| x.start_conference_on_enter);
        if starts {
            conf.status = "in-progress".into();
            events.push(Event::ConferenceStatus {
                conference_sid: conf.sid.clone(),
                friendly_name: conf.friendly_name.clone(),
                status: "in-progress".into(),
            });
            hooks.extend(conference_event(
                sim,
                conf,
                "conference-start",
                call_sid,
                now,
            ));
            if conf.record && conf.recording.is_none() {
                let rsid = sim.sid("RE");
                let url = recording_url(sim, &rsid);
                conf.recording = Some((rsid.clone(), url.clone(), now));
                events.push(Event::Recording {
                    recording_sid: rsid,
                    url,
                    call_sid: None,
                    conference_sid: Some(conf.sid.clone()),
                });
            }
        }
        let result = (conf.sid.clone(), conf.ended.subscribe());
        for event in events {
            Inner::record(&mut st, now, event);
        }
        result
    };
    send_all(sim, call_sid, "conference-callback", hooks);
    Some(result)
}

fn leave(sim: &Arc<Inner>, conf_sid: &str, call_sid: &str) {
    let now = sim.clock.now();
    let mut hooks = Vec::new();
    let mut recording_hook = None;
    {
        let mut st = sim.lock();
        let Some(conf) = st.conferences.iter_mut().find(|c| c.sid == conf_sid) else {
            return;
        };
        let Some(pos) = conf
            .participants
            .iter()
            .position(|x| x.call_sid == call_sid)
        else {
            return;
        };
        hooks.extend(conference_event(
            sim,
            conf,
            "participant-leave",
            call_sid,
            now,
        ));
        let gone = conf.participants.remove(pos);
        conf.date_updated = now;
        let mut events = vec![Event::ParticipantLeft {
            conference_sid: conf.sid.clone(),
            friendly_name: conf.friendly_name.clone(),
            call_sid: call_sid.to_string(),
        }];
        let reason = if conf.status == "completed" {
            None
        } else if gone.end_conference_on_exit {
            Some("participant-with-end-conference-on-exit-left")
        } else if conf.participants.is_empty() {
            Some("last-participant-left")
        } else {
            None
        };
        if let Some(reason) = reason {
            conf.status = "completed".into();
            conf.reason_conference_ended = Some(reason.into());
            conf.call_sid_ending_conference = Some(call_sid.to_string());
            events.push(Event::ConferenceStatus {
                conference_sid: conf.sid.clone(),
                friendly_name: conf.friendly_name.clone(),
                status: "completed".into(),
            });
            hooks.extend(conference_event(sim, conf, "conference-end", call_sid, now));
            let _ = conf.ended.send(true);
            if let (Some((rsid, url, _)), Some((cb, method))) =
                (&conf.recording, &conf.recording_status_callback)
            {
                let seconds = conf.date_created.duration_until(now).as_secs().max(0);
                recording_hook = Some((
                    cb.clone(),
                    method.clone(),
                    vec![
                        p("AccountSid", sim.account()),
                        p("ConferenceSid", &conf.sid),
                        p("RecordingSid", rsid),
                        p("RecordingUrl", url),
                        p("RecordingStatus", "completed"),
                        p("RecordingDuration", seconds.to_string()),
                        p("RecordingChannels", "1"),
                        p("RecordingSource", "DialVerb"),
                        p("Timestamp", rfc2822(now)),
                    ],
                ));
            }
        }
        for event in events {
            Inner::record(&mut st, now, event);
        }
    }
    send_all(sim, call_sid, "conference-callback", hooks);
    send_all(
        sim,
        call_sid,
        "recording-callback",
        recording_hook.into_iter().collect(),
    );
}

/// An inbound call to an owned number: answered at once, its VoiceUrl runs.
pub(crate) fn dial_in(sim: &Arc<Inner>, from: &str, to: &str) -> Result<String, SimError> {
    let now = sim.clock.now();
    let sid = sim.sid("CA");
    let (tx, rx) = mpsc::unbounded_channel();
    let (instructions, who) = {
        let mut st = sim.lock();
        let number = st
            .numbers
            .iter()
            .find(|n| n.phone_number == to)
            .ok_or_else(|| SimError::UnknownNumber(to.to_string()))?
            .clone();
        let url = number.field("voice_url").unwrap_or_default();
        let method = number
            .field("voice_method")
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        let instructions = Instructions::Url { url, method };
        let status_callback = number.field("status_callback");
        let status_callback_method = number
            .field("status_callback_method")
            .unwrap_or_else(|| "POST".into());
        st.calls.push(Call {
            sid: sid.clone(),
            from: from.to_string(),
            to: to.to_string(),
            direction: "inbound".into(),
            status: "ringing".into(),
            date_created: now,
            date_updated: now,
            start_time: Some(now),
            answered_at: None,
            end_time: None,
            answered_by: None,
            machine_detection: false,
            timeout: 60.0,
            time_limit: 14_400.0,
            instructions: instructions.clone(),
            status_callback,
            status_callback_method,
            status_callback_events: vec!["completed".into()],
            record: false,
            sequence: 0,
            phone_number_sid: Some(number.sid.clone()),
            queue_time_ms: 0,
            events: Vec::new(),
            control: Some(tx),
        });
        Inner::record(
            &mut st,
            now,
            Event::CallCreated {
                call_sid: sid.clone(),
                from: from.to_string(),
                to: to.to_string(),
                direction: "inbound".into(),
            },
        );
        Inner::record(
            &mut st,
            now,
            Event::CallStatus {
                call_sid: sid.clone(),
                status: "ringing".into(),
            },
        );
        (instructions, st.script.for_address(from).clone())
    };
    let run = Run {
        sim: sim.clone(),
        sid: sid.clone(),
        rx,
        stop: sim.shutdown.subscribe(),
        who,
        hangup_at: None,
    };
    let sim2 = sim.clone();
    let sid2 = sid.clone();
    tokio::spawn(async move {
        transition(&sim2, &sid2, "in-progress");
        execute(run, instructions.into()).await;
    });
    Ok(sid)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn digits_collected_like_gather() {
        assert_eq!(collect_digits("1", Some(1), "#"), ("1".into(), "".into()));
        assert_eq!(collect_digits("123", Some(1), "#"), ("1".into(), "".into()));
        assert_eq!(collect_digits("12#3", None, "#"), ("12".into(), "#".into()));
        assert_eq!(snake_case("CallStatus"), "call_status");
        assert_eq!(
            resolve(Some("http://127.0.0.1:9/a/b.xml"), "c.xml").as_deref(),
            Some("http://127.0.0.1:9/a/c.xml")
        );
    }
}
