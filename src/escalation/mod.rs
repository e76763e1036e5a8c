//! Escalation: from a policy, a page and what was observed, the next actions. Pure: no client,
//! no clock reads.
