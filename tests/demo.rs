//! `alertcall demo` as a newcomer runs it: the binary, its exit code and what it prints.

use std::process::Command;

fn demo(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_alertcall"))
        .arg("demo")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running alertcall demo: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_default_demo_pages_the_sre_rotation_until_carol_presses_1() {
    let (code, stdout, stderr) = demo(&[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for line in [
        "SIMULATION",
        "page     AlertCall default/critical-workloads-",
        "dial alice (+14155550101) round 1",
        "alice no-answer",
        "bob answered by voicemail",
        "carol pressed 1",
        "carol joined room sre-incident",
        "Acknowledged by carol after",
        "This was a simulation",
        "alertcall twilio-sim",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn the_db_owners_demo_ends_all_acked() {
    let (code, stdout, stderr) = demo(&["--example", "db-owners"]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for line in [
        "Alertmanager alert PostgresReplicationLag",
        "dial erik (+14155550202) round 2",
        "erik pressed 1",
        "Acknowledged by ",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn an_unknown_example_fails_with_the_choices() {
    let (code, stdout, stderr) = demo(&["--example", "nope"]);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("no example \"nope\"; choose one of: sre-oncall, db-owners, schedule"),
        "{stderr}"
    );
}
