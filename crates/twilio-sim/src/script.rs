//! Recipient scripts: how each simulated person behaves when called.
//!
//! A script is YAML (`alertcall twilio-sim --script FILE`, or [`Script::from_yaml`] in process).
//! Addresses are the `To` of an outbound call (or the `From` of an inbound one): E.164 numbers,
//! `client:NAME` or `sip:URI`. Anyone not listed behaves as `default`. Times are simulated seconds.
//!
//! ```yaml
//! default:                 # optional; this is the built-in default
//!   outcome: answer        # answer | no-answer | busy | failed | voicemail
//!   answerAfter: 5         # seconds of ringing before pickup (answer, voicemail)
//! recipients:
//!   "+819012345678":
//!     outcome: answer
//!     answerAfter: 3
//!     press: "1"           # keys pressed 1 s after a <Gather>'s prompt has played once
//!     hangupAfter: 30      # leaves the conference 30 s after joining (absent: stays until ended)
//!   "+819012345679":
//!     press: "1"
//!     hangupAfterPress: 1  # hangs up 1 s after pressing, wherever the call is (before the room)
//!   "+819000000002": {outcome: busy}
//!   "client:bob": {outcome: no-answer}
//!   "sip:carol@example.com": {outcome: voicemail, answerAfter: 8}
//!   "+819000000003": {outcome: failed}
//! ```
//!
//! `answer` without `press` listens and never presses; `voicemail` answers and never presses
//! (reported as `AnsweredBy=machine_start` when the call asked for `MachineDetection`).
//! An answer later than the call's `Timeout` is a `no-answer`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happens when the phone rings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A person picks up after `answer_after` seconds.
    #[default]
    Answer,
    /// Rings until the call's timeout: `no-answer`.
    NoAnswer,
    /// The line is busy: `busy`.
    Busy,
    /// The call cannot be connected: `failed`.
    Failed,
    /// A machine answers after `answer_after` seconds and never presses a key.
    Voicemail,
}

/// One recipient's behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recipient {
    #[serde(default)]
    pub outcome: Outcome,
    /// Seconds of ringing before pickup.
    #[serde(default = "default_answer_after")]
    pub answer_after: f64,
    /// Keys pressed after hearing a `<Gather>` prompt; none: never presses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub press: Option<String>,
    /// Seconds after joining a conference when this person hangs up; none: stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_after: Option<f64>,
    /// Seconds after pressing the keys when this person hangs up, wherever the call is (during
    /// the confirmation, before reaching the room); none: stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_after_press: Option<f64>,
}

fn default_answer_after() -> f64 {
    5.0
}

impl Default for Recipient {
    fn default() -> Self {
        Recipient {
            outcome: Outcome::Answer,
            answer_after: default_answer_after(),
            press: None,
            hangup_after: None,
            hangup_after_press: None,
        }
    }
}

impl Recipient {
    /// Answers after `seconds`.
    pub fn answers_after(seconds: f64) -> Self {
        Recipient {
            answer_after: seconds,
            ..Recipient::default()
        }
    }
    /// Answers after `seconds` and presses `digits` at the prompt.
    pub fn presses(seconds: f64, digits: &str) -> Self {
        Recipient {
            answer_after: seconds,
            press: Some(digits.to_string()),
            ..Recipient::default()
        }
    }
    pub fn with_outcome(outcome: Outcome) -> Self {
        Recipient {
            outcome,
            ..Recipient::default()
        }
    }
    pub fn voicemail(seconds: f64) -> Self {
        Recipient {
            outcome: Outcome::Voicemail,
            answer_after: seconds,
            ..Recipient::default()
        }
    }
    pub fn hangup_after(mut self, seconds: f64) -> Self {
        self.hangup_after = Some(seconds);
        self
    }
    /// Hangs up `seconds` after pressing the keys ("got it", hang up, open the laptop).
    pub fn hangup_after_press(mut self, seconds: f64) -> Self {
        self.hangup_after_press = Some(seconds);
        self
    }
}

/// Everyone's behaviour: per-address entries and a default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Script {
    #[serde(default)]
    pub default: Recipient,
    #[serde(default)]
    pub recipients: BTreeMap<String, Recipient>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("script is not valid YAML for the simulator: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("script entry {address:?}: {message}")]
    Invalid { address: String, message: String },
}

impl Script {
    pub fn from_yaml(text: &str) -> Result<Script, ScriptError> {
        let script: Script = serde_yaml::from_str(text)?;
        script.validate()?;
        Ok(script)
    }

    /// Sets (or replaces) one address's behaviour.
    pub fn with(mut self, address: &str, recipient: Recipient) -> Self {
        self.recipients.insert(address.to_string(), recipient);
        self
    }

    pub fn for_address(&self, address: &str) -> &Recipient {
        self.recipients.get(address).unwrap_or(&self.default)
    }

    fn validate(&self) -> Result<(), ScriptError> {
        let entries = std::iter::once(("default", &self.default))
            .chain(self.recipients.iter().map(|(k, v)| (k.as_str(), v)));
        for (address, recipient) in entries {
            let invalid = |message: &str| ScriptError::Invalid {
                address: address.to_string(),
                message: message.to_string(),
            };
            if !(recipient.answer_after.is_finite() && recipient.answer_after >= 0.0) {
                return Err(invalid(
                    "answerAfter must be a non-negative number of seconds",
                ));
            }
            if let Some(h) = recipient.hangup_after {
                if !(h.is_finite() && h >= 0.0) {
                    return Err(invalid(
                        "hangupAfter must be a non-negative number of seconds",
                    ));
                }
            }
            if let Some(h) = recipient.hangup_after_press {
                if !(h.is_finite() && h >= 0.0) {
                    return Err(invalid(
                        "hangupAfterPress must be a non-negative number of seconds",
                    ));
                }
            }
            if let Some(press) = &recipient.press {
                let ok = !press.is_empty()
                    && press
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
                if !ok {
                    return Err(invalid("press must be keys from 0-9, * and #"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let script = Script::from_yaml(include_str!("../../../examples/simulator/script.yaml"))
            .expect("example script parses");
        assert_eq!(
            script.for_address("+819012345678").press.as_deref(),
            Some("1")
        );
        assert_eq!(script.for_address("client:bob").outcome, Outcome::NoAnswer);
        assert_eq!(script.for_address("+10000000000"), &script.default);
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(Script::from_yaml("recipients: {'+1': {press: 'x'}}").is_err());
        assert!(Script::from_yaml("recipients: {'+1': {answerAfter: -1}}").is_err());
        assert!(Script::from_yaml("recipients: {'+1': {outcome: maybe}}").is_err());
        assert!(Script::from_yaml("recipients: {'+1': {shout: true}}").is_err());
        assert!(Script::from_yaml("recipients: {'+1': {hangupAfterPress: -1}}").is_err());
        let script = Script::from_yaml("recipients: {'+1': {press: '1', hangupAfterPress: 1}}")
            .expect("parses");
        assert_eq!(script.for_address("+1").hangup_after_press, Some(1.0));
    }
}
