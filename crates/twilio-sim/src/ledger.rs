//! The ledger: everything the simulator saw and did, stamped with simulated time.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One line of the ledger (`GET /__sim/ledger` returns `{"entries": [...]}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the ledger, from 0.
    pub seq: u64,
    /// Simulated time.
    pub at: Timestamp,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A request to the simulator's REST API or hosted assets, with the status it got.
    Request {
        method: String,
        path: String,
        /// The query string as sent (list filters and paging), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        status: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_code: Option<u32>,
        /// The Basic auth user name the request gave (the account SID, or an API key SID),
        /// whether or not it was accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// A call was created (outbound through the API, or inbound through `dial_in`).
    CallCreated {
        call_sid: String,
        from: String,
        to: String,
        direction: String,
    },
    /// A call changed status (`queued`, `initiated`, `ringing`, `in-progress`, terminal ones).
    CallStatus { call_sid: String, status: String },
    /// The recipient pressed keys during a `<Gather>`.
    Digits { call_sid: String, digits: String },
    /// A webhook request the simulator made (status callback, TwiML fetch, Gather action...).
    Webhook {
        call_sid: Option<String>,
        /// `status-callback`, `voice-url`, `gather-action`, `dial-action`, `redirect`,
        /// `conference-callback`, `recording-callback`.
        purpose: String,
        method: String,
        url: String,
        params: BTreeMap<String, String>,
        /// Response status; absent when no response came (see `error`).
        response_status: Option<u16>,
        error: Option<String>,
    },
    /// A conference room changed status (`init`, `in-progress`, `completed`).
    ConferenceStatus {
        conference_sid: String,
        friendly_name: String,
        status: String,
    },
    ParticipantJoined {
        conference_sid: String,
        friendly_name: String,
        call_sid: String,
        wait_url: Option<String>,
    },
    ParticipantLeft {
        conference_sid: String,
        friendly_name: String,
        call_sid: String,
    },
    /// A recording was made (conference `record`, `<Dial record>` or `Record=true`).
    Recording {
        recording_sid: String,
        url: String,
        call_sid: Option<String>,
        conference_sid: Option<String>,
    },
    /// Something went wrong executing a call (bad TwiML, unreachable or non-loopback URL...).
    Error {
        call_sid: Option<String>,
        message: String,
    },
}

/// A snapshot of the ledger with helpers for assertions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    pub entries: Vec<Entry>,
}

impl Ledger {
    /// The statuses a call went through, in order.
    pub fn call_statuses(&self, call_sid: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match &e.event {
                Event::CallStatus {
                    call_sid: s,
                    status,
                } if s == call_sid => Some(status.clone()),
                _ => None,
            })
            .collect()
    }

    /// When a call first reached `status` (simulated time).
    pub fn status_time(&self, call_sid: &str, status: &str) -> Option<Timestamp> {
        self.entries.iter().find_map(|e| match &e.event {
            Event::CallStatus {
                call_sid: s,
                status: st,
            } if s == call_sid && st == status => Some(e.at),
            _ => None,
        })
    }

    /// The webhook requests made for a call.
    pub fn webhooks(&self, call_sid: &str) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(
                |e| matches!(&e.event, Event::Webhook { call_sid: Some(s), .. } if s == call_sid),
            )
            .collect()
    }

    /// Calls that joined the room named `friendly_name`, in join order.
    pub fn participants_of(&self, friendly_name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match &e.event {
                Event::ParticipantJoined {
                    friendly_name: n,
                    call_sid,
                    ..
                } if n == friendly_name => Some(call_sid.clone()),
                _ => None,
            })
            .collect()
    }
}
