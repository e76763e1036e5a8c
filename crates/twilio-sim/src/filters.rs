//! The date filters of Conferences list, as Twilio's OAI describes them: `DateCreated` and
//! `DateUpdated`, each also as `<` and `>` (sent as `DateCreated<=YYYY-MM-DD`), a date in UTC
//! and nothing finer. `>=` means on or after that day's midnight, `<=` on or before that day.
//! A value that is not a date is refused, as the docs promise no other form.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::routes::Form;

/// The date filters of `query` on the field `name` (`DateCreated`, `DateUpdated`): whether
/// `at` passes them all, or the parameter whose value is not a `YYYY-MM-DD` date.
pub(crate) fn date_matches(query: &Form, name: &str, at: Timestamp) -> Result<bool, String> {
    let day = at.to_zoned(TimeZone::UTC).date();
    for (key, value) in query {
        let Some(op) = key.strip_prefix(name) else {
            continue;
        };
        if !matches!(op, "" | "<" | ">") {
            continue;
        }
        let Ok(date) = value.parse::<Date>() else {
            return Err(key.clone());
        };
        // NB: jiff parses `2026-12-01T10:00` as a date too; Twilio's form is the date alone.
        if value.len() != 10 {
            return Err(key.clone());
        }
        let ok = match op {
            "<" => day <= date,
            ">" => day >= date,
            _ => day == date,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Form {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dates_filter_by_day_only() {
        let at: Timestamp = "2026-12-01T10:30:00Z".parse().unwrap();
        let on = |pairs: &[(&str, &str)]| date_matches(&q(pairs), "DateCreated", at);
        assert_eq!(on(&[("DateCreated>", "2026-12-01")]), Ok(true));
        assert_eq!(on(&[("DateCreated>", "2026-12-02")]), Ok(false));
        assert_eq!(on(&[("DateCreated<", "2026-12-01")]), Ok(true));
        assert_eq!(on(&[("DateCreated<", "2026-11-30")]), Ok(false));
        assert_eq!(on(&[("DateCreated", "2026-12-01")]), Ok(true));
        assert_eq!(on(&[("DateCreated", "2026-11-30")]), Ok(false));
        assert_eq!(on(&[("DateUpdated>", "2026-12-09")]), Ok(true));
        assert_eq!(
            on(&[("DateCreated>", "2026-12-01T10:00:00Z")]),
            Err("DateCreated>".to_string())
        );
        assert_eq!(
            on(&[("DateCreated>", "Tue, 01 Dec 2026 10:00:00 +0000")]),
            Err("DateCreated>".to_string())
        );
    }
}
