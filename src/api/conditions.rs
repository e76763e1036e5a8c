//! Status conditions that keep `lastTransitionTime` unless the status flips, so a resync that
//! finds nothing new writes nothing new.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_` and reports whether anything a reader cares about changed
/// (status, reason, message or generation; not timestamps).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) -> bool {
    let status = if status { "True" } else { "False" };
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let flipped = existing.status != status;
        let changed = flipped
            || existing.reason != reason
            || existing.message != message
            || existing.observed_generation != observed_generation;
        if flipped {
            existing.last_transition_time = now;
        }
        existing.status = status.to_string();
        existing.reason = reason.to_string();
        existing.message = message.to_string();
        existing.observed_generation = observed_generation;
        return changed;
    }
    conditions.push(Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time: now,
    });
    true
}

/// The condition of that type, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
    }

    #[test]
    fn new_condition_is_added() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            "Ready",
            true,
            "Ok",
            "fine",
            Some(1),
            at(10)
        ));
        assert_eq!(conditions.len(), 1);
        assert!(is_true(&conditions, "Ready"));
    }

    #[test]
    fn same_status_keeps_transition_time_and_reports_no_change() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Ready",
            true,
            "Ok",
            "fine",
            Some(1),
            at(10),
        );
        assert!(!set_condition(
            &mut conditions,
            "Ready",
            true,
            "Ok",
            "fine",
            Some(1),
            at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
    }

    #[test]
    fn new_message_is_a_change_but_not_a_transition() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Ready",
            false,
            "Bad",
            "one",
            Some(1),
            at(10),
        );
        assert!(set_condition(
            &mut conditions,
            "Ready",
            false,
            "Bad",
            "two",
            Some(1),
            at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].message, "two");
    }

    #[test]
    fn flip_moves_transition_time() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, "Ready", false, "Bad", "x", Some(1), at(10));
        assert!(set_condition(
            &mut conditions,
            "Ready",
            true,
            "Ok",
            "y",
            Some(1),
            at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(20));
        assert!(is_true(&conditions, "Ready"));
    }
}
