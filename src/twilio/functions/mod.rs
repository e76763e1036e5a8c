//! The Twilio Functions alertcall deploys into its Serverless service, kept as JavaScript files
//! next to this module and embedded in the binary. Their Node tests are in `test/`
//! (`node --test src/twilio/functions/test/ack.test.js`, run by `cargo test --test functions`).

/// The acknowledgement function: the `<Gather>` action that records a keypress in the install's
/// Sync Map before answering. `ack.js` documents its contract (environment variables, query
/// parameters, the item and the TwiML).
pub mod ack {
    /// Where the function is served in the service's environment (its Function Version path).
    pub const PATH: &str = "/alertcall/ack";
    /// Twilio's Runtime rejects requests without a valid `X-Twilio-Signature`.
    pub const VISIBILITY: &str = "protected";
    /// The JavaScript source, uploaded as the Function Version's content.
    pub const SOURCE: &str = include_str!("ack.js");
    /// The Sync Map the function writes to when `ACK_MAP` is not set.
    pub const DEFAULT_MAP: &str = "alertcall-acks";
    /// How long an item lives when `ACK_TTL_SECONDS` is not set: three days.
    pub const DEFAULT_TTL_SECONDS: u32 = 259_200;

    /// Environment variable names of the function.
    pub mod env {
        pub const SYNC_SERVICE_SID: &str = "SYNC_SERVICE_SID";
        pub const MAP: &str = "ACK_MAP";
        pub const TTL_SECONDS: &str = "ACK_TTL_SECONDS";
    }

    /// Query parameter names of the action URL.
    pub mod query {
        pub const ATTEMPT: &str = "attempt";
        pub const ROOM: &str = "room";
        pub const SAY: &str = "say";
        pub const LANGUAGE: &str = "language";
        pub const VOICE: &str = "voice";
        pub const HOLD: &str = "hold";
        pub const RECORD: &str = "record";
        pub const BYE: &str = "bye";
    }
}

#[cfg(test)]
mod tests {
    use super::ack;

    #[test]
    fn the_source_names_the_contract_it_is_deployed_with() {
        assert!(ack::SOURCE.contains("exports.handler"));
        for name in [
            ack::env::SYNC_SERVICE_SID,
            ack::env::MAP,
            ack::env::TTL_SECONDS,
            ack::DEFAULT_MAP,
            &ack::DEFAULT_TTL_SECONDS.to_string(),
        ] {
            assert!(ack::SOURCE.contains(name), "{name} not in ack.js");
        }
        for name in [
            ack::query::ATTEMPT,
            ack::query::ROOM,
            ack::query::SAY,
            ack::query::LANGUAGE,
            ack::query::VOICE,
            ack::query::HOLD,
            ack::query::RECORD,
            ack::query::BYE,
        ] {
            assert!(
                ack::SOURCE.contains(&format!("event.{name}")),
                "ack.js never reads {name}"
            );
        }
    }
}
