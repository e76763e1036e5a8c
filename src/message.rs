//! The spoken message: templates rendered with a signal's fields (`{{ reason }}`, `{{ labels.x }}`).
//!
//! Rendering is lenient (a missing label renders empty) because an emergency must never be dropped
//! over a template; validation renders strictly against a sample, so typos surface as a condition.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The fields a message template can use.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MessageContext {
    pub reason: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub message: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub count: i64,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl MessageContext {
    /// A plausible event used to check that templates render.
    pub fn sample() -> Self {
        Self {
            reason: "BackOff".into(),
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "api-7f9c6d5b8-x2x9q".into(),
            message: "Back-off restarting failed container api".into(),
            type_: "Warning".into(),
            count: 3,
            summary: "api is crash looping".into(),
            labels: BTreeMap::from([("severity".into(), "critical".into())]),
            annotations: BTreeMap::from([("description".into(), "api is down".into())]),
        }
    }

    /// Text spoken when the template fails: plain, and still enough to act on.
    pub fn fallback_text(&self) -> String {
        let mut parts = vec!["Alert.".to_string()];
        let what = [self.reason.as_str(), self.summary.as_str()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("");
        if !what.is_empty() {
            parts.push(format!("{what}."));
        }
        let object = match (self.namespace.is_empty(), self.name.is_empty()) {
            (false, false) => format!("{} {}/{}.", self.kind, self.namespace, self.name),
            (true, false) => format!("{} {}.", self.kind, self.name),
            _ => String::new(),
        };
        if !object.trim().is_empty() {
            parts.push(object.trim().to_string());
        }
        if !self.message.is_empty() {
            parts.push(self.message.clone());
        }
        parts.join(" ")
    }
}

/// Why a template did not render.
#[derive(Debug, thiserror::Error)]
#[error("template error: {0}")]
pub struct TemplateError(String);

fn environment(undefined: UndefinedBehavior) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(undefined);
    // NB: the output is spoken, not HTML; TwiML escaping happens when the document is written.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

fn render_with(
    template: &str,
    context: &MessageContext,
    undefined: UndefinedBehavior,
) -> Result<String, TemplateError> {
    let env = environment(undefined);
    let rendered = env
        .render_str(template, context)
        .map_err(|error| TemplateError(describe(&error)))?;
    Ok(collapse_whitespace(&rendered))
}

fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{detail} ({})", error.kind()),
        None => error.kind().to_string(),
    }
}

/// Speech does not need layout; collapsing whitespace also keeps inline TwiML short.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Renders leniently: unknown fields are empty.
pub fn render(template: &str, context: &MessageContext) -> Result<String, TemplateError> {
    render_with(template, context, UndefinedBehavior::Chainable)
}

/// Renders, or falls back to a plain text so the page still goes out. Returns the error too.
pub fn render_or_fallback(
    template: &str,
    context: &MessageContext,
) -> (String, Option<TemplateError>) {
    match render(template, context) {
        Ok(text) if !text.is_empty() => (text, None),
        Ok(_) => (
            context.fallback_text(),
            Some(TemplateError("template rendered to empty text".into())),
        ),
        Err(error) => (context.fallback_text(), Some(error)),
    }
}

/// Checks a template strictly against a sample: syntax errors and unknown top-level fields fail.
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    let env = environment(UndefinedBehavior::Strict);
    let parsed = env
        .template_from_str(template)
        .map_err(|error| TemplateError(describe(&error)))?;
    let known = known_fields();
    let mut unknown: Vec<String> = parsed
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !known.contains(&name.as_str()))
        .collect();
    unknown.sort();
    if !unknown.is_empty() {
        return Err(TemplateError(format!(
            "unknown field(s) {}; known: {}",
            unknown.join(", "),
            known.join(", ")
        )));
    }
    // Labels and annotations differ per signal, so the sample render is lenient about them.
    render(template, &MessageContext::sample()).map(|_| ())
}

fn known_fields() -> Vec<&'static str> {
    vec![
        "reason",
        "kind",
        "namespace",
        "name",
        "message",
        "type",
        "count",
        "summary",
        "labels",
        "annotations",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_annotations_are_reachable() {
        let text = render(
            "{{ labels.severity }}: {{ annotations.description }}",
            &MessageContext::sample(),
        );
        assert_eq!(text.ok().as_deref(), Some("critical: api is down"));
    }

    #[test]
    fn missing_label_renders_empty_instead_of_failing() {
        let text = render("x{{ labels.nope }}y", &MessageContext::sample());
        assert_eq!(text.ok().as_deref(), Some("xy"));
    }

    #[test]
    fn html_characters_are_not_escaped_in_speech() {
        let context = MessageContext {
            message: "a < b & \"c\"".into(),
            ..MessageContext::sample()
        };
        assert_eq!(
            render("{{ message }}", &context).ok().as_deref(),
            Some("a < b & \"c\"")
        );
    }

    #[test]
    fn syntax_error_is_reported() {
        assert!(check_template("{{ reason ").is_err());
    }

    #[test]
    fn unknown_field_is_reported_by_name() {
        let error = check_template("{{ reasn }}").err().map(|e| e.to_string());
        assert!(error.unwrap_or_default().contains("reasn"));
    }

    #[test]
    fn broken_template_falls_back_to_plain_text() {
        let (text, error) =
            render_or_fallback("{{ reason | no_such_filter }}", &MessageContext::sample());
        assert!(error.is_some());
        assert_eq!(
            text,
            "Alert. BackOff. Pod default/api-7f9c6d5b8-x2x9q. Back-off restarting failed container api"
        );
    }

    #[test]
    fn japanese_text_survives() {
        let context = MessageContext {
            message: "ポッドが再起動を繰り返しています".into(),
            ..MessageContext::sample()
        };
        assert_eq!(
            render("緊急: {{ message }}", &context).ok().as_deref(),
            Some("緊急: ポッドが再起動を繰り返しています")
        );
    }
}
