//! The Twilio Functions alertcall deploys, run under a real Node.js: their own Node tests
//! (`node --test`, with a fake Runtime), and the acknowledgement function's answer for real
//! policies, which must be the ack document alertcall renders itself. `scripts/test.sh` installs
//! Node.js when it is missing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use alertcall::api::CallPolicy;
use alertcall::twilio::documents;
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
        let url = ack::action_url(
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
