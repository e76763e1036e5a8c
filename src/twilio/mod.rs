//! Everything that speaks Twilio: the REST client, TwiML documents, webhook signatures, and the
//! simulator that stands in for Twilio in tests and the demo.

pub mod signature;
pub mod sim;
