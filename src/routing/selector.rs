//! Kubernetes `LabelSelector` evaluation against a label map, with the apiserver's semantics:
//! `matchLabels` and every `matchExpressions` entry must hold; `NotIn` and `DoesNotExist` match
//! when the key is absent; an empty selector matches everything.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Why a selector cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("matchExpressions[{index}]: unknown operator {operator:?}; use In, NotIn, Exists or DoesNotExist")]
    Operator { index: usize, operator: String },
    #[error("matchExpressions[{index}]: operator {operator} needs at least one value")]
    MissingValues { index: usize, operator: String },
    #[error("matchExpressions[{index}]: operator {operator} takes no values")]
    UnexpectedValues { index: usize, operator: String },
    #[error("{place}: invalid label key {key:?}: {why}")]
    Key {
        place: String,
        key: String,
        why: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// A validated selector, compiled once when the route index is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    pub fn compile(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            check_key(key, || format!("matchLabels[{key:?}]"))?;
            requirements.push(Requirement::Equals(key.clone(), value.clone()));
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let key = expression.key.clone();
            check_key(&key, || format!("matchExpressions[{index}].key"))?;
            let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
            let operator = expression.operator.as_str();
            let needs_values = |requirement: Requirement| {
                if values.is_empty() {
                    Err(SelectorError::MissingValues {
                        index,
                        operator: operator.to_string(),
                    })
                } else {
                    Ok(requirement)
                }
            };
            let no_values = |requirement: Requirement| {
                if values.is_empty() {
                    Ok(requirement)
                } else {
                    Err(SelectorError::UnexpectedValues {
                        index,
                        operator: operator.to_string(),
                    })
                }
            };
            requirements.push(match operator {
                "In" => needs_values(Requirement::In(key, values.clone()))?,
                "NotIn" => needs_values(Requirement::NotIn(key, values.clone()))?,
                "Exists" => no_values(Requirement::Exists(key))?,
                "DoesNotExist" => no_values(Requirement::DoesNotExist(key))?,
                other => {
                    return Err(SelectorError::Operator {
                        index,
                        operator: other.to_string(),
                    })
                }
            });
        }
        Ok(Self { requirements })
    }

    /// Every requirement holds (an empty selector matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// Compiles and evaluates in one step, for one-off checks.
pub fn matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    Ok(Selector::compile(selector)?.matches(labels))
}

/// A label key: optional DNS subdomain prefix and `/`, then a name of at most 63 characters
/// of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn check_key(key: &str, place: impl Fn() -> String) -> Result<(), SelectorError> {
    let fail = |why| {
        Err(SelectorError::Key {
            place: place(),
            key: key.to_string(),
            why,
        })
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_dns_subdomain(prefix) {
            return fail("the prefix must be a lowercase DNS subdomain");
        }
    }
    if name.is_empty() || name.len() > 63 {
        return fail("the name part must be 1 to 63 characters");
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if !name.starts_with(alnum)
        || !name.ends_with(alnum)
        || !name
            .chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
    {
        return fail("use alphanumerics, '-', '_' or '.', starting and ending alphanumeric");
    }
    Ok(())
}

/// A lowercase RFC 1123 DNS subdomain, as Kubernetes names and label-key prefixes must be.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| v.to_string()).collect())
            },
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        exprs: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: if match_labels.is_empty() {
                None
            } else {
                Some(labels(match_labels))
            },
            match_expressions: if exprs.is_empty() { None } else { Some(exprs) },
        }
    }

    #[test]
    fn evaluation_table() {
        let pod = labels(&[("tier", "critical"), ("app", "api")]);
        let table: Vec<(LabelSelector, bool)> = vec![
            (LabelSelector::default(), true),
            (selector(&[], vec![]), true),
            (selector(&[("tier", "critical")], vec![]), true),
            (selector(&[("tier", "low")], vec![]), false),
            (
                selector(&[("tier", "critical"), ("app", "web")], vec![]),
                false,
            ),
            (selector(&[("missing", "")], vec![]), false),
            (
                selector(&[], vec![expr("app", "In", &["api", "web"])]),
                true,
            ),
            (selector(&[], vec![expr("app", "In", &["web"])]), false),
            (selector(&[], vec![expr("missing", "In", &["x"])]), false),
            (selector(&[], vec![expr("app", "NotIn", &["web"])]), true),
            (selector(&[], vec![expr("app", "NotIn", &["api"])]), false),
            (selector(&[], vec![expr("missing", "NotIn", &["x"])]), true),
            (selector(&[], vec![expr("app", "Exists", &[])]), true),
            (selector(&[], vec![expr("missing", "Exists", &[])]), false),
            (
                selector(&[], vec![expr("missing", "DoesNotExist", &[])]),
                true,
            ),
            (selector(&[], vec![expr("app", "DoesNotExist", &[])]), false),
            (
                selector(
                    &[("tier", "critical")],
                    vec![
                        expr("app", "In", &["api"]),
                        expr("canary", "DoesNotExist", &[]),
                    ],
                ),
                true,
            ),
            (
                selector(&[("tier", "critical")], vec![expr("app", "In", &["web"])]),
                false,
            ),
        ];
        for (index, (sel, want)) in table.iter().enumerate() {
            assert_eq!(matches(sel, &pod), Ok(*want), "row {index}: {sel:?}");
        }
    }

    #[test]
    fn invalid_selectors_are_errors() {
        let bad = [
            (
                selector(&[], vec![expr("app", "Equals", &["x"])]),
                "unknown operator \"Equals\"",
            ),
            (
                selector(&[], vec![expr("app", "in", &["x"])]),
                "unknown operator",
            ),
            (
                selector(&[], vec![expr("app", "In", &[])]),
                "needs at least one value",
            ),
            (
                selector(&[], vec![expr("app", "NotIn", &[])]),
                "needs at least one value",
            ),
            (
                selector(&[], vec![expr("app", "Exists", &["x"])]),
                "takes no values",
            ),
            (selector(&[("bad key", "x")], vec![]), "invalid label key"),
            (
                selector(&[], vec![expr("", "Exists", &[])]),
                "invalid label key",
            ),
            (
                selector(&[], vec![expr("Example.com/x", "Exists", &[])]),
                "prefix",
            ),
        ];
        for (sel, message) in bad {
            let error = Selector::compile(&sel).err().map(|e| e.to_string());
            let text = error.unwrap_or_default();
            assert!(text.contains(message), "{sel:?}: {text:?}");
        }
    }

    #[test]
    fn prefixed_keys_are_valid() {
        let sel = selector(&[("app.kubernetes.io/name", "api")], vec![]);
        assert_eq!(
            matches(&sel, &labels(&[("app.kubernetes.io/name", "api")])),
            Ok(true)
        );
    }

    #[test]
    fn operator_error_names_the_expression() {
        let sel = selector(
            &[],
            vec![expr("a", "Exists", &[]), expr("b", "Matches", &["x"])],
        );
        let error = Selector::compile(&sel).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("matchExpressions[1]: unknown operator \"Matches\"; use In, NotIn, Exists or DoesNotExist")
        );
    }
}
