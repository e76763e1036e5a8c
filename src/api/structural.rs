//! A manifest as the API server would take it, offline: the same steps, against the very
//! OpenAPI schemas `alertcall crd` emits. On create the server
//! 1. prunes fields its structural schema does not know (silently, on kube-apiserver 1.20; a
//!    typo such as `ringTimeout` for `ringTimeoutSeconds` is lost without a word),
//! 2. drops `null`s of fields that are not `nullable` and fills in `default`s,
//! 3. validates what is left (type, pattern, enum, bounds, lengths, items, required, oneOf),
//! 4. validates `metadata` on its own (the schema only says `type: object`) and ignores `status`
//!    (a status subresource is written through `/status` only).
//!
//! Here step 1 is an error instead, since whatever was pruned was meant to say something.
//! Step 3 is a JSON-schema validator (draft 4, which OpenAPI 3.0 schemas derive from) rather than
//! rules of our own, so the schema stays the one source of truth.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One way a manifest differs from what the API server would store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Where, as `spec.recipients[0].phone`; empty for the document itself.
    pub path: String,
    pub message: String,
    pub kind: FindingKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The server rejects the document (HTTP 422).
    Invalid,
    /// The server would accept the document without this field.
    UnknownField,
}

impl FindingKind {
    /// Short stable name, for `--output json`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Invalid => "invalid",
            FindingKind::UnknownField => "unknown-field",
        }
    }
}

/// The fields of `metadata` the server decodes (`ObjectMeta`); anything else there is dropped.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "clusterName",
    "managedFields",
];

struct KindSchema {
    /// The version's `openAPIV3Schema`, as in the CRD: walked for pruning and defaults.
    structural: Value,
    validator: jsonschema::Validator,
    /// The schema given to the validator, to explain `oneOf` failures from their schema path.
    validated: Value,
}

/// The schemas of every served version of the CRDs, by `(apiVersion, kind)`.
pub struct Schemas {
    kinds: BTreeMap<(String, String), KindSchema>,
}

impl Schemas {
    /// The schemas of this operator's CRDs, exactly as `alertcall crd` prints them.
    pub fn of_crds() -> Result<Self, String> {
        let mut kinds = BTreeMap::new();
        for crd in super::crds() {
            let group = crd.spec.group.clone();
            let kind = crd.spec.names.kind.clone();
            for version in &crd.spec.versions {
                let Some(schema) = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                else {
                    continue;
                };
                let structural = serde_json::to_value(schema)
                    .map_err(|error| format!("{kind} schema: {error}"))?;
                let validated = for_validator(&structural);
                let validator = jsonschema::draft4::new(&validated)
                    .map_err(|error| format!("{kind} {} schema: {error}", version.name))?;
                kinds.insert(
                    (format!("{group}/{}", version.name), kind.clone()),
                    KindSchema {
                        structural,
                        validator,
                        validated,
                    },
                );
            }
        }
        Ok(Schemas { kinds })
    }

    /// Whether the document's `apiVersion` and `kind` name one of the CRDs.
    pub fn covers(&self, document: &Value) -> bool {
        self.kinds.contains_key(&type_of(document))
    }

    /// Everything the API server would reject or prune in `document`, in document order; `None`
    /// when the document is not of one of the CRDs.
    pub fn check(&self, document: &Value) -> Option<Vec<Finding>> {
        self.store(document).map(|(findings, _)| findings)
    }

    /// [`Schemas::check`], and the object as the server would store it: pruned, without the
    /// `null`s it drops, with its defaults, without `status`.
    pub fn store(&self, document: &Value) -> Option<(Vec<Finding>, Value)> {
        let schema = self.kinds.get(&type_of(document))?;
        let mut findings = Vec::new();
        let Value::Object(fields) = document else {
            return Some((vec![invalid("", "not an object")], document.clone()));
        };
        let mut stored = fields.clone();
        stored.remove("status");
        match stored.get("metadata") {
            Some(Value::Object(meta)) => check_metadata(meta, &mut findings),
            Some(_) => findings.push(invalid("metadata", "must be an object")),
            None => findings.push(invalid("metadata.name", "name or generateName is required")),
        }
        // The root schema leaves out what every object has: set aside while pruning.
        let type_meta: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
            .into_iter()
            .filter_map(|key| stored.remove(key).map(|value| (key.to_string(), value)))
            .collect();
        let mut stored = Value::Object(stored);
        prune(&schema.structural, &mut stored, "", &mut findings);
        if let Value::Object(stored) = &mut stored {
            stored.extend(type_meta);
        }
        for error in schema.validator.iter_errors(&stored) {
            let path = dotted(&stored, error.instance_path().as_str());
            let message = match error.kind() {
                jsonschema::error::ValidationErrorKind::OneOfNotValid { .. }
                | jsonschema::error::ValidationErrorKind::OneOfMultipleValid { .. } => {
                    one_of_message(&schema.validated, error.schema_path().as_str())
                }
                _ => error.to_string(),
            };
            findings.push(invalid(&path, &message));
        }
        Some((findings, stored))
    }
}

fn invalid(path: &str, message: &str) -> Finding {
    Finding {
        path: path.to_string(),
        message: message.to_string(),
        kind: FindingKind::Invalid,
    }
}

fn type_of(document: &Value) -> (String, String) {
    let field = |name: &str| {
        document
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (field("apiVersion"), field("kind"))
}

/// The structural schema with OpenAPI's `nullable` spelled as JSON schema's `"null"` type.
fn for_validator(schema: &Value) -> Value {
    match schema {
        Value::Object(fields) => {
            let mut out: Map<String, Value> = fields
                .iter()
                .map(|(key, value)| {
                    // Keyword-valued maps recurse; `enum` and `default` are data, left alone.
                    let value = match key.as_str() {
                        "enum" | "default" | "example" => value.clone(),
                        _ => for_validator(value),
                    };
                    (key.clone(), value)
                })
                .collect();
            if fields.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(type_)) = fields.get("type") {
                    out.insert("type".to_string(), serde_json::json!([type_, "null"]));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(for_validator).collect()),
        other => other.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The server's pruning and defaulting, recording each pruned field as a finding.
fn prune(schema: &Value, value: &mut Value, path: &str, findings: &mut Vec<Finding>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = fields.keys().cloned().collect();
            for key in keys {
                let field_path = join(path, &key);
                let property = properties.and_then(|p| p.get(&key)).or(additional);
                let Some(property) = property else {
                    findings.push(Finding {
                        path: field_path,
                        message: unknown_message(&key, properties),
                        kind: FindingKind::UnknownField,
                    });
                    fields.remove(&key);
                    continue;
                };
                let nullable = property.get("nullable") == Some(&Value::Bool(true));
                if fields.get(&key).is_some_and(Value::is_null) && !nullable {
                    fields.remove(&key);
                    continue;
                }
                if let Some(field) = fields.get_mut(&key) {
                    prune(property, field, &field_path, findings);
                }
            }
            for (key, property) in properties.into_iter().flatten() {
                if let Some(default) = property.get("default") {
                    fields.entry(key.clone()).or_insert_with(|| default.clone());
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{index}]"), findings);
                }
            }
        }
        _ => {}
    }
}

fn unknown_message(key: &str, known: Option<&Map<String, Value>>) -> String {
    let mut message =
        format!("unknown field {key:?}: the API server would drop it without an error");
    let Some(known) = known else {
        return message;
    };
    let close = known
        .keys()
        .filter(|candidate| similar(key, candidate))
        .cloned()
        .collect::<Vec<_>>();
    if !close.is_empty() {
        message.push_str(&format!("; did you mean {}?", close.join(" or ")));
    } else {
        let names = known.keys().cloned().collect::<Vec<_>>();
        message.push_str(&format!("; known here: {}", names.join(", ")));
    }
    message
}

/// A likely misspelling: one is a prefix of the other, or they differ in case only.
fn similar(a: &str, b: &str) -> bool {
    if a == b {
        return false;
    }
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || (a.len() >= 3 && b.len() >= 3 && (a.starts_with(&b) || b.starts_with(&a)))
}

/// What the server checks of `metadata` on a custom resource.
fn check_metadata(meta: &Map<String, Value>, findings: &mut Vec<Finding>) {
    for key in meta.keys() {
        if !OBJECT_META_FIELDS.contains(&key.as_str()) {
            findings.push(Finding {
                path: join("metadata", key),
                message: format!(
                    "unknown field {key:?}: the API server would drop it without an error"
                ),
                kind: FindingKind::UnknownField,
            });
        }
    }
    let name = meta.get("name").and_then(Value::as_str);
    let generate_name = meta.get("generateName").and_then(Value::as_str);
    match (name, generate_name) {
        (Some(name), _) if !name.is_empty() => {
            if let Some(problem) = dns_subdomain_problem(name) {
                findings.push(invalid("metadata.name", &problem));
            }
        }
        (_, Some(prefix)) if !prefix.is_empty() => {
            // The server appends 5 characters; the prefix alone need not end alphanumeric.
            if let Some(problem) = dns_subdomain_problem(&format!("{prefix}x")) {
                findings.push(invalid("metadata.generateName", &problem));
            }
        }
        _ => findings.push(invalid("metadata.name", "name or generateName is required")),
    }
    if let Some(namespace) = meta.get("namespace") {
        match namespace.as_str() {
            Some(ns) if ns.len() <= 63 && dns_label(ns) => {}
            _ => findings.push(invalid(
                "metadata.namespace",
                "must be a DNS label: lower case alphanumerics or '-', at most 63 characters",
            )),
        }
    }
    for map in ["labels", "annotations"] {
        if let Some(values) = meta.get(map) {
            let strings = values
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !strings {
                findings.push(invalid(
                    &join("metadata", map),
                    "must be a map of strings to strings",
                ));
            }
        }
    }
}

fn dns_label(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !part.starts_with('-')
        && !part.ends_with('-')
}

/// Kubernetes' `IsDNS1123Subdomain`, the rule for names of custom resources.
fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some(format!("{name:?} is longer than 253 characters"));
    }
    if name.split('.').all(dns_label) {
        None
    } else {
        Some(format!(
            "{name:?} is not a DNS-1123 subdomain: lower case alphanumerics, '-' and '.', \
             starting and ending with an alphanumeric"
        ))
    }
}

/// A JSON pointer into `document` as a dotted path with `[index]` for list items.
fn dotted(document: &Value, pointer: &str) -> String {
    let mut path = String::new();
    let mut current = Some(document);
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        match current {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{segment}]"));
                current = segment.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                path = join(&path, &segment);
                current = other.and_then(|v| v.get(&segment));
            }
        }
    }
    path
}

/// A `oneOf` failure in words: which alternatives there are, from the schema.
fn one_of_message(schema: &Value, schema_path: &str) -> String {
    let alternatives = schema
        .pointer(schema_path)
        .and_then(Value::as_array)
        .map(|alternatives| {
            alternatives
                .iter()
                .map(|alternative| match alternative.get("required") {
                    Some(Value::Array(fields)) if fields.len() == 1 => {
                        fields[0].as_str().unwrap_or("?").to_string()
                    }
                    _ => alternative.to_string(),
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if alternatives.is_empty() {
        "must match exactly one of the alternatives of its oneOf".to_string()
    } else {
        format!("exactly one of {} must be set", alternatives.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> Schemas {
        match Schemas::of_crds() {
            Ok(schemas) => schemas,
            Err(error) => panic!("{error}"),
        }
    }

    fn policy(spec: Value) -> Value {
        json!({
            "apiVersion": "alertcall.dev/v1alpha1",
            "kind": "CallPolicy",
            "metadata": {"name": "p"},
            "spec": spec,
        })
    }

    fn findings(document: Value) -> Vec<Finding> {
        schemas().check(&document).unwrap_or_default()
    }

    fn good_spec() -> Value {
        json!({
            "twilio": {"credentialsSecretRef": {"name": "t"}, "from": "+15005550006"},
            "recipients": [{"name": "a", "phone": "+15005550101"}],
        })
    }

    #[test]
    fn a_valid_policy_has_no_findings() {
        assert_eq!(findings(policy(good_spec())), vec![]);
    }

    #[test]
    fn other_kinds_are_not_ours() {
        assert!(schemas()
            .check(&json!({"apiVersion": "v1", "kind": "Secret"}))
            .is_none());
    }

    #[test]
    fn pattern_violations_name_the_field() {
        let mut spec = good_spec();
        spec["recipients"][0]["phone"] = json!("09012345678");
        let found = findings(policy(spec));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.recipients[0].phone");
        assert_eq!(found[0].kind, FindingKind::Invalid);
    }

    #[test]
    fn unknown_fields_are_findings_with_a_suggestion() {
        let mut spec = good_spec();
        spec["strategy"] = json!({"ringTimeout": 20});
        let found = findings(policy(spec));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.strategy.ringTimeout");
        assert_eq!(found[0].kind, FindingKind::UnknownField);
        assert!(found[0].message.contains("ringTimeoutSeconds"), "{found:?}");
    }

    #[test]
    fn one_of_says_which_fields() {
        let mut spec = good_spec();
        spec["recipients"][0]["client"] = json!("a");
        let found = findings(policy(spec));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.recipients[0]");
        assert!(
            found[0]
                .message
                .contains("exactly one of phone, client, sip"),
            "{found:?}"
        );
    }

    #[test]
    fn nulls_are_dropped_and_defaults_apply_before_validation() {
        let mut spec = good_spec();
        spec["strategy"] = json!({"rounds": null});
        assert_eq!(findings(policy(spec)), vec![]);
    }

    #[test]
    fn status_is_ignored_and_metadata_is_checked() {
        let mut document = policy(good_spec());
        document["status"] = json!({"anything": 1});
        document["metadata"] = json!({"name": "Bad_Name", "lables": {"a": "b"}});
        let found = findings(document);
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["metadata.lables", "metadata.name"], "{found:?}");
    }

    #[test]
    fn pointers_become_dotted_paths() {
        let document = json!({"spec": {"list": [{"a": 1}]}});
        assert_eq!(dotted(&document, "/spec/list/0/a"), "spec.list[0].a");
        assert_eq!(dotted(&document, ""), "");
    }
}
