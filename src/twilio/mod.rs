//! Everything that speaks Twilio: the REST client, TwiML documents, webhook signatures, and the
//! simulator that stands in for Twilio in tests and the demo.

pub mod client;
pub mod documents;
pub mod error;
pub mod signature;
pub mod sim;
pub mod twiml;
pub mod types;

pub use client::{Credentials, TwilioClient, TwilioConfig};
pub use error::{Operation, RetryClass, TwilioError};
