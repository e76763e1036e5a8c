//! alertcall: a Kubernetes operator that pages on-call people by phone through Twilio.
//!
//! ```text
//!  Kubernetes Events ─┐                           ┌─> AlertCall (one page) ─> escalation::step ─> page::runner ─> Twilio
//!  Alertmanager ──────┼─> sources ─> pipeline ────┤                                  ^                         │
//!  kubectl create ac ─┘     (candidates)  (routes,└─ AlertRoute status                └── observations <───────┘
//!                                          pager)                              (status callbacks, polling)
//!  CallPolicy ─> controllers::call_policy ─> TwiML documents hosted by Twilio, bridge number webhook
//! ```
//!
//! Deciding is pure (`api::validate`, `message`, `routing`, `escalation`, `twilio::twiml`);
//! I/O happens at the edges (`controllers`, `sources`, `pipeline`, `page`, `twilio::client`);
//! `operator` wires them. `page` is the Twilio side of a page without Kubernetes: `page::calls` (polls, dial requests, cancels,
//! lookups) and `page::executor`, the one runner of `escalation::step`'s actions, shared by the
//! AlertCall controller (status in Kubernetes) and `alertcall demo` (status in memory).
//!
//! `docs/architecture.md` names the functions from a labeled Event to a dial, in order;
//! `docs/design.md` states what each resource means and what is guaranteed.

#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controllers;
pub mod escalation;
pub mod http;
pub mod leader;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod page;
pub mod pipeline;
pub mod routing;
pub mod schedule;
pub mod sources;
pub mod telemetry;
pub mod twilio;

#[cfg(test)]
pub mod fixtures;
