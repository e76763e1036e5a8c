//! The Twilio Functions alertcall deploys, run under a real Node.js: their own Node tests
//! (`node --test`, with a fake Runtime), and the acknowledgement function's answer for real
//! policies, which must be the ack document alertcall renders itself. `scripts/test.sh` installs
//! Node.js when it is missing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;

use alertcall::api::CallPolicy;
use alertcall::page::documents;
use alertcall::twilio::functions::ack;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node() -> Command {
    let mut command = Command::new("node");
    command.current_dir(repo());
    command
}

fn node_missing(error: std::io::Error) -> ! {
    panic!("cannot run `node` ({error}): scripts/test.sh installs Node.js (Debian package nodejs)")
}

/// Runs `ack.js` once under the fake Runtime (`test/run.js`).
pub fn run_ack_function(env: Value, event: Value) -> Value {
    let mut child = node()
        .arg("src/twilio/functions/test/run.js")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| node_missing(e));
    let input = json!({"env": env, "event": event}).to_string();
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("node reads its input");
    let output = child.wait_with_output().expect("node runs");
    assert!(
        output.status.success(),
        "run.js failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("run.js prints JSON")
}

#[test]
fn the_functions_pass_their_node_tests() {
    let output = node()
        .args(["--test", "src/twilio/functions/test/ack.test.js"])
        .output()
        .unwrap_or_else(|e| node_missing(e));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "node --test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // NB: a runner that found no test file would also succeed.
    assert!(stdout.contains("# pass "), "{stdout}");
    assert!(stdout.contains("# fail 0"), "{stdout}");
}

fn policy(file: &str) -> CallPolicy {
    let path = repo().join("examples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The request Twilio makes to the function for a keypress on a call whose Gather action is
/// `url`: the query's parameters plus the call's.
fn keypress_event(url: &str, call_sid: &str, digits: &str) -> Value {
    let parsed = url::Url::parse(url).expect("action URL parses");
    let mut event: serde_json::Map<String, Value> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), json!(v)))
        .collect();
    event.insert("CallSid".into(), json!(call_sid));
    event.insert("Digits".into(), json!(digits));
    event.insert("FinishedOnKey".into(), json!(""));
    Value::Object(event)
}

#[test]
fn the_function_answers_with_alertcalls_own_ack_document() {
    let sequential = policy("policy-sequential.yaml");
    let mut japanese = policy("policy-simultaneous-all-ack.yaml");
    japanese.spec.message.language = "ja-JP".into();
    japanese.spec.message.voice = Some("Polly.Mizuki".into());
    let mut hosted = policy("policy-sequential.yaml");
    hosted.spec.conference.hold_music_url = Some("https://example.com/hold.mp3?a=1&b=2".into());
    hosted.spec.conference.record = true;
    let cases = [
        ("sequential", sequential, "prod-oncall"),
        ("japanese", japanese, "本番 & <room> \"1\""),
        ("hold and record", hosted, "room'x'"),
    ];
    for (name, policy, room) in cases {
        let url = documents::ack_action_url(
            "https://alertcall-1234-prod.twil.io/alertcall/ack",
            &policy.spec,
            room,
            "r0-1",
        )
        .expect("a valid function URL");
        let call = "CA0123456789abcdef0123456789abcdef";
        let result = run_ack_function(json!({}), keypress_event(&url, call, "1"));
        assert_eq!(
            result["body"].as_str(),
            Some(documents::ack_document(&policy.spec, room).as_str()),
            "{name}"
        );
        assert_eq!(result["headers"]["Content-Type"], "text/xml", "{name}");
        let data = &result["writes"][0]["params"]["data"];
        assert_eq!(data["callSid"], call, "{name}");
        assert_eq!(data["attempt"], "r0-1", "{name}");
        assert_eq!(data["digits"], "1", "{name}");

        let mut no_key = keypress_event(&url, call, "");
        no_key["Digits"] = json!("");
        let result = run_ack_function(json!({}), no_key);
        assert_eq!(result["writes"], json!([]), "{name}");
        let goodbye = result["body"].as_str().unwrap_or_default();
        assert!(
            goodbye.contains(documents::no_input_prompt(&policy.spec))
                && goodbye.contains("<Hangup/>"),
            "{name}: {goodbye}"
        );
    }
}

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "functions-token";

async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request
        .basic_auth(AC, Some(TOKEN))
        .send()
        .await
        .expect("the simulator answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Deploys `ack.js` into the simulator the way Twilio takes it, with a Sync service and map;
/// returns the function's URL and the Sync service SID.
async fn deploy(sim: &alertcall::twilio::sim::SimHandle, map: &str, ttl: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let base = format!("{}/v1/Services", sim.serverless_url());
    let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (_, service) = call(http.post(&base).form(&form(&[
        ("UniqueName", "alertcall"),
        ("FriendlyName", "alertcall"),
        ("IncludeCredentials", "true"),
    ])))
    .await;
    let zs = service["sid"].as_str().unwrap_or_default().to_string();
    let (_, env) = call(http.post(format!("{base}/{zs}/Environments")).form(&form(&[
        ("UniqueName", "production"),
        ("DomainSuffix", "prod"),
    ])))
    .await;
    let ze = env["sid"].as_str().unwrap_or_default().to_string();
    let domain = env["domain_name"].as_str().unwrap_or_default().to_string();
    let (_, function) = call(
        http.post(format!("{base}/{zs}/Functions"))
            .form(&form(&[("FriendlyName", "ack")])),
    )
    .await;
    let zh = function["sid"].as_str().unwrap_or_default().to_string();
    let content = reqwest::multipart::Part::bytes(ack::SOURCE.as_bytes().to_vec())
        .file_name("ack.js")
        .mime_str("application/javascript")
        .expect("a MIME type");
    let upload = reqwest::multipart::Form::new()
        .text("Path", ack::PATH)
        .text("Visibility", ack::VISIBILITY)
        .part("Content", content);
    let (status, version) = call(
        http.post(format!(
            "{}/v1/Services/{zs}/Functions/{zh}/Versions",
            sim.upload_url()
        ))
        .multipart(upload),
    )
    .await;
    assert_eq!(status, 201, "{version}");
    let zn = version["sid"].as_str().unwrap_or_default().to_string();
    let sync = format!("{}/v1/Services", sim.sync_url());
    let (_, sync_service) = call(
        http.post(&sync)
            .form(&form(&[("FriendlyName", "alertcall")])),
    )
    .await;
    let is = sync_service["sid"].as_str().unwrap_or_default().to_string();
    let (status, body) = call(
        http.post(format!("{sync}/{is}/Maps"))
            .form(&form(&[("UniqueName", map)])),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for (key, value) in [
        (ack::env::SYNC_SERVICE_SID, is.as_str()),
        (ack::env::MAP, map),
        (ack::env::TTL_SECONDS, ttl),
    ] {
        let (status, body) = call(
            http.post(format!("{base}/{zs}/Environments/{ze}/Variables"))
                .form(&form(&[("Key", key), ("Value", value)])),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, build) = call(
        http.post(format!("{base}/{zs}/Builds"))
            .form(&form(&[("FunctionVersions", &zn), ("Runtime", "node22")])),
    )
    .await;
    assert_eq!(status, 201, "{build}");
    let zb = build["sid"].as_str().unwrap_or_default().to_string();
    let mut built = false;
    for _ in 0..400 {
        let (_, status) = call(http.get(format!("{base}/{zs}/Builds/{zb}/Status"))).await;
        if status["status"] == "completed" {
            built = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(built, "the build completes");
    let (status, body) = call(
        http.post(format!("{base}/{zs}/Environments/{ze}/Deployments"))
            .form(&form(&[("BuildSid", &zb)])),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (format!("http://{domain}{}", ack::PATH), is)
}

/// Stands for "no room: a test call's action URL" among the rooms of the cases below.
const TEST_CALL: &str = "(test call)";

/// The simulator's emulation of the deployed function and the real `ack.js` under Node.js,
/// given the same requests, write the same Sync item and answer the same TwiML.
#[tokio::test]
async fn the_simulators_emulation_equals_the_function() {
    use alertcall::twilio::sim::{SimConfig, Simulator};
    let sim = Simulator::start(SimConfig {
        time_scale: 20.0,
        ..SimConfig::new(AC, TOKEN)
    })
    .await
    .expect("the simulator starts");
    let (function, is) = deploy(&sim, "acks", "600").await;
    let env = json!({
        ack::env::SYNC_SERVICE_SID: is,
        ack::env::MAP: "acks",
        ack::env::TTL_SECONDS: "600",
    });
    let mut japanese = policy("policy-simultaneous-all-ack.yaml");
    japanese.spec.message.language = "ja-JP".into();
    japanese.spec.message.voice = Some("Polly.Mizuki".into());
    japanese.spec.conference.hold_music_url = Some("https://example.com/hold.mp3?a=1&b=2".into());
    japanese.spec.conference.record = true;
    let cases = [
        (
            policy("policy-sequential.yaml"),
            "prod-oncall",
            "1",
            "CA00000000000000000000000000000001",
        ),
        (
            japanese,
            "本番 & <room> \"1\"",
            "#",
            "CA00000000000000000000000000000002",
        ),
        (
            policy("policy-sequential.yaml"),
            "prod-oncall",
            "",
            "CA00000000000000000000000000000003",
        ),
        // A test call's action (`kubectl alertcall test`): no room, the test's confirmation.
        (
            policy("policy-sequential.yaml"),
            TEST_CALL,
            "1",
            "CA00000000000000000000000000000004",
        ),
    ];
    let http = reqwest::Client::new();
    for (policy, room, digits, call_sid) in cases {
        let url = if room == TEST_CALL {
            documents::test_ack_action_url(&function, &policy.spec, "r1-2").expect("a URL")
        } else {
            documents::ack_action_url(&function, &policy.spec, room, "r1-2").expect("a URL")
        };
        let body = vec![
            ("CallSid".to_string(), call_sid.to_string()),
            ("AccountSid".to_string(), AC.to_string()),
            ("Digits".to_string(), digits.to_string()),
            ("FinishedOnKey".to_string(), String::new()),
        ];
        let response = http
            .post(&url)
            .header(
                "X-Twilio-Signature",
                alertcall::twilio::signature::compute(TOKEN, &url, &body),
            )
            .form(&body)
            .send()
            .await
            .expect("the function answers");
        assert_eq!(response.status().as_u16(), 200, "{call_sid}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let emulated = response.text().await.expect("a body");

        let mut event = keypress_event(&url, call_sid, digits);
        event["AccountSid"] = json!(AC);
        let node = run_ack_function(env.clone(), event);
        assert_eq!(Some(emulated.as_str()), node["body"].as_str(), "{call_sid}");
        if room == TEST_CALL {
            assert!(emulated.contains("The test passed"), "{emulated}");
            assert!(
                !emulated.contains("<Dial"),
                "a test never joins the room: {emulated}"
            );
        }
        assert_eq!(
            Some(content_type.as_str()),
            node["headers"]["Content-Type"].as_str()
        );

        let (status, item) = call(http.get(format!(
            "{}/v1/Services/{is}/Maps/acks/Items/{call_sid}",
            sim.sync_url()
        )))
        .await;
        let written = node["writes"].as_array().cloned().unwrap_or_default();
        if digits.is_empty() {
            assert_eq!(status, 404, "{call_sid}: {item}");
            assert!(written.is_empty(), "{call_sid}");
            continue;
        }
        assert_eq!(status, 200, "{call_sid}: {item}");
        assert_eq!(written.len(), 1, "{call_sid}");
        let params = &written[0]["params"];
        assert_eq!(written[0]["service"], is.as_str());
        assert_eq!(written[0]["map"], "acks");
        assert_eq!(params["key"], item["key"]);
        assert_eq!(params["itemTtl"], 600);
        let ttl = jiff::Timestamp::from_str(item["date_expires"].as_str().unwrap_or_default())
            .and_then(|expires| {
                jiff::Timestamp::from_str(item["date_created"].as_str().unwrap_or_default())
                    .map(|created| created.duration_until(expires).as_secs())
            })
            .expect("ISO 8601 dates");
        assert_eq!(ttl, 600, "{item}");
        let without_time = |data: &Value| {
            let mut data = data.clone();
            let at = data
                .as_object_mut()
                .and_then(|o| o.remove("at"))
                .and_then(|at| at.as_str().map(str::to_string))
                .unwrap_or_default();
            assert!(jiff::Timestamp::from_str(&at).is_ok(), "{at}");
            assert!(
                at.ends_with('Z') && at.len() == 24,
                "ISO with milliseconds: {at}"
            );
            data
        };
        assert_eq!(
            without_time(&item["data"]),
            without_time(&params["data"]),
            "{call_sid}"
        );
    }
    sim.shutdown().await;
}

/// A policy whose key is `#`: the call's own TwiML (`finishOnKey=""`) lets `#` through as the
/// digit, the deployed function records it, and the person who hangs up a second later is still
/// recorded. Without `finishOnKey=""` Twilio (and the simulator) end the Gather on `#` with no
/// digits, and nothing would be recorded.
#[tokio::test]
async fn a_policy_whose_key_is_hash_is_acknowledged_by_hash() {
    use alertcall::twilio::sim::{Recipient, Script, SimConfig, Simulator};
    let alice = "+15005550101";
    let sim = Simulator::start(SimConfig {
        time_scale: 20.0,
        script: Script::default().with(alice, Recipient::presses(1.0, "#").hangup_after_press(1.0)),
        ..SimConfig::new(AC, TOKEN)
    })
    .await
    .expect("the simulator starts");
    let (function, is) = deploy(&sim, "acks", "600").await;
    let mut policy = policy("policy-sequential.yaml");
    policy.spec.acknowledgement.digits = "#".into();
    let action =
        documents::ack_action_url(&function, &policy.spec, "prod-oncall", "r0-0").expect("a URL");
    let twiml = documents::call_twiml(&policy.spec, "Disk full on db-0", &action).expect("fits");
    let http = reqwest::Client::new();
    let form = [
        ("To", alice),
        ("From", "+15005550006"),
        ("Twiml", twiml.as_str()),
    ];
    let (status, created) = call(
        http.post(format!(
            "{}/2010-04-01/Accounts/{AC}/Calls.json",
            sim.api_url()
        ))
        .form(&form),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let sid = created["sid"].as_str().unwrap_or_default().to_string();
    let item_url = format!("{}/v1/Services/{is}/Maps/acks/Items/{sid}", sim.sync_url());
    let mut item = Value::Null;
    for _ in 0..800 {
        let (status, body) = call(http.get(&item_url)).await;
        let ended =
            sim.ledger().call_statuses(&sid).last().map(String::as_str) == Some("completed");
        if status == 200 && ended {
            item = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(item["data"]["digits"], "#", "{item}");
    assert_eq!(item["data"]["attempt"], "r0-0", "{item}");
    assert!(sim.ledger().participants_of("prod-oncall").is_empty());
    sim.shutdown().await;
}
