//! Everything that speaks Twilio: the REST client, TwiML documents and webhook signatures. The
//! simulator that stands in for Twilio in tests and the demo is its own crate,
//! `crates/twilio-sim`, re-exported here as `sim` with the default feature `sim`.

pub mod account;
pub mod client;
pub mod error;
pub mod signature;
pub mod twiml;
pub mod types;

#[cfg(feature = "sim")]
pub use twilio_sim as sim;

pub use account::{Account, TwilioEndpoints};
pub use client::{Credentials, TwilioClient, TwilioConfig};
pub use error::{Operation, RetryClass, TwilioError};
