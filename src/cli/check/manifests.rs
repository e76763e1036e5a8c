//! The manifests of a `check`: every YAML document read, those of the CRDs' kinds checked as
//! the API server would (`api::structural`), then as the controllers would (`api::validate`),
//! each error located by file, document, object and JSON path.

use std::collections::BTreeMap;
use std::path::Path;

use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::api::{self, AlertCall, AlertRoute, CallPolicy, OnCallSchedule};
use crate::schedule::interval::Intervals;
use crate::schedule::Schedule;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based position of the YAML document in its file; 0 for the file itself.
    pub document: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where in the document, as `spec.recipients[0].phone`; empty for the whole document.
    pub path: String,
    pub message: String,
    /// `file`, `yaml`, `invalid` and `unknown-field` are what the API server would reject or
    /// drop; `semantic` is what the controllers would report as `Ready=False`.
    pub category: &'static str,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.document > 0 {
            write!(f, " (document {})", self.document)?;
        }
        write!(f, ": ")?;
        if let Some(kind) = &self.kind {
            write!(f, "{kind} ")?;
            if let Some(name) = &self.name {
                let namespace = self.namespace.as_deref().unwrap_or("default");
                write!(f, "{namespace}/{name} ")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)
    }
}

/// Where a manifest came from, to locate what is wrong with it.
#[derive(Clone, Debug, Default)]
struct Origin {
    file: String,
    document: usize,
}

/// The alertcall resources found in a set of manifests.
#[derive(Debug, Default)]
pub struct Manifests {
    pub policies: Vec<CallPolicy>,
    pub routes: Vec<AlertRoute>,
    pub calls: Vec<AlertCall>,
    pub schedules: Vec<OnCallSchedule>,
    origins: BTreeMap<(String, String, String), Origin>,
}

impl Manifests {
    /// Parses every YAML document; documents of other kinds are skipped. Each error names the
    /// source and the document number.
    pub fn parse(sources: &[(String, String)]) -> Result<Self, Vec<String>> {
        let (manifests, errors) = Self::check(sources);
        if errors.is_empty() {
            Ok(manifests)
        } else {
            Err(errors.iter().map(ToString::to_string).collect())
        }
    }

    /// Parses every YAML document and checks each one of the CRDs' kinds as the API server
    /// would (see `api::structural`). A document the server would reject is not kept; one with
    /// unknown fields is kept without them, as the server would store it.
    pub fn check(sources: &[(String, String)]) -> (Self, Vec<Diagnostic>) {
        let mut manifests = Manifests::default();
        let mut errors = Vec::new();
        let schemas = match api::structural::Schemas::of_crds() {
            Ok(schemas) => schemas,
            Err(message) => {
                errors.push(Diagnostic {
                    file: "alertcall crd".to_string(),
                    document: 0,
                    kind: None,
                    namespace: None,
                    name: None,
                    path: String::new(),
                    message,
                    category: "file",
                });
                return (manifests, errors);
            }
        };
        for (source, text) in sources {
            for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
                let origin = Origin {
                    file: source.clone(),
                    document: index + 1,
                };
                let value = match serde_json::Value::deserialize(document) {
                    Ok(serde_json::Value::Null) => continue,
                    Ok(value) => value,
                    Err(error) => {
                        errors.push(origin.diagnostic(
                            None,
                            "",
                            format!("not YAML: {error}"),
                            "yaml",
                        ));
                        continue;
                    }
                };
                manifests.add(&schemas, value, origin, &mut errors);
            }
        }
        errors.extend(manifests.semantic_diagnostics());
        (manifests, errors)
    }

    fn add(
        &mut self,
        schemas: &api::structural::Schemas,
        document: serde_json::Value,
        origin: Origin,
        errors: &mut Vec<Diagnostic>,
    ) {
        let Some((findings, mut value)) = schemas.store(&document) else {
            return;
        };
        let text = |field: &str| value.get(field).and_then(|v| v.as_str()).map(String::from);
        let kind = text("kind").unwrap_or_default();
        let meta = |field: &str| {
            value
                .get("metadata")
                .and_then(|m| m.get(field))
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        let (name, namespace) = (meta("name"), meta("namespace"));
        let mut rejected = false;
        for finding in findings {
            rejected |= finding.kind == api::structural::FindingKind::Invalid;
            errors.push(Diagnostic {
                kind: Some(kind.clone()),
                namespace: namespace.clone(),
                name: name.clone(),
                ..origin.diagnostic(None, &finding.path, finding.message, finding.kind.as_str())
            });
        }
        if rejected {
            return;
        }
        // kubectl puts a manifest without a namespace into its context's, `default` here.
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.entry("namespace")
                .or_insert_with(|| serde_json::Value::String("default".to_string()));
        }
        let key = (
            kind.clone(),
            namespace.unwrap_or_else(|| "default".to_string()),
            name.clone().unwrap_or_default(),
        );
        let parsed = match kind.as_str() {
            "CallPolicy" => serde_json::from_value(value).map(|p| self.policies.push(p)),
            "AlertRoute" => serde_json::from_value(value).map(|r| self.routes.push(r)),
            "AlertCall" => serde_json::from_value(value).map(|c| self.calls.push(c)),
            "OnCallSchedule" => serde_json::from_value(value).map(|s| self.schedules.push(s)),
            _ => Ok(()),
        };
        match parsed {
            Ok(()) => {
                self.origins.insert(key, origin);
            }
            Err(error) => errors.push(Diagnostic {
                kind: Some(kind),
                namespace: Some(key.1),
                name,
                ..origin.diagnostic(None, "", error.to_string(), "invalid")
            }),
        }
    }

    /// Reads the YAML files under `path`.
    pub fn load(path: &Path) -> Result<Self, Vec<String>> {
        let sources = read_sources(path).map_err(|error| vec![error.to_string()])?;
        Self::parse(&sources)
    }

    /// The policy a namespaced reference points at.
    pub fn policy(&self, namespace: &str, name: &str) -> Option<&CallPolicy> {
        self.policies
            .iter()
            .find(|p| p.name_any() == name && namespace_of(*p) == namespace)
    }

    /// The controller's `EscalationLoop`: the chain of `onExhausted` from `policy`, among the
    /// policies of its namespace in the folder, comes back to a policy already in it.
    fn escalation_loop(&self, policy: &CallPolicy) -> Option<String> {
        policy.spec.on_exhausted.as_ref()?;
        let namespace = namespace_of(policy);
        let next_of = |name: &str| {
            self.policy(&namespace, name)
                .and_then(|p| p.spec.on_exhausted.as_ref())
                .map(|o| o.policy_ref.name.clone())
        };
        let chain = crate::escalation::chain(&policy.name_any(), next_of);
        chain.loops_to.as_ref()?;
        Some(format!(
            "escalation loop: {} (EscalationLoop: onExhausted comes back to a policy already in the chain)",
            chain.describe()
        ))
    }

    /// Every semantic problem, as `Kind namespace/name: field: message` lines.
    pub fn problems(&self) -> Vec<String> {
        self.semantic_diagnostics()
            .iter()
            .map(|d| {
                format!(
                    "{} {}/{}: {}{}",
                    d.kind.as_deref().unwrap_or_default(),
                    d.namespace.as_deref().unwrap_or_default(),
                    d.name.as_deref().unwrap_or_default(),
                    if d.path.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", d.path)
                    },
                    d.message
                )
            })
            .collect()
    }

    /// What the controllers would report as `Ready=False`, located in the manifests.
    pub fn semantic_diagnostics(&self) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let mut push = |kind: &str, object: &dyn Located, field: String, message: String| {
            let key = (kind.to_string(), object.namespace(), object.name());
            let origin = self.origins.get(&key).cloned().unwrap_or_default();
            problems.push(Diagnostic {
                kind: Some(kind.to_string()),
                namespace: Some(key.1),
                name: Some(key.2),
                ..origin.diagnostic(None, &field, message, "semantic")
            });
        };
        for policy in &self.policies {
            for problem in api::validate::call_policy(&policy.spec) {
                push("CallPolicy", policy, problem.field, problem.message);
            }
            let quiet = Intervals::compile(&policy.spec.quiet_hours, "spec.quietHours");
            for problem in quiet.err().unwrap_or_default() {
                push("CallPolicy", policy, problem.field, problem.message);
            }
            if let Some(message) = self.escalation_loop(policy) {
                push(
                    "CallPolicy",
                    policy,
                    "spec.onExhausted".to_string(),
                    message,
                );
            }
        }
        for route in &self.routes {
            for problem in api::validate::alert_route(&route.spec) {
                push("AlertRoute", route, problem.field, problem.message);
            }
            let windows = [
                (
                    &route.spec.active_time_intervals,
                    "spec.activeTimeIntervals",
                ),
                (&route.spec.mute_time_intervals, "spec.muteTimeIntervals"),
            ];
            for (intervals, field) in windows {
                for problem in Intervals::compile(intervals, field)
                    .err()
                    .unwrap_or_default()
                {
                    push("AlertRoute", route, problem.field, problem.message);
                }
            }
            let policy = &route.spec.policy_ref.name;
            if self.policy(&namespace_of(route), policy).is_none() {
                push(
                    "AlertRoute",
                    route,
                    "spec.policyRef".to_string(),
                    format!(
                        "no CallPolicy {policy:?} in namespace {:?}",
                        namespace_of(route)
                    ),
                );
            }
        }
        for schedule in &self.schedules {
            for problem in Schedule::compile(&schedule.spec).err().unwrap_or_default() {
                push("OnCallSchedule", schedule, problem.field, problem.message);
            }
        }
        problems
    }

    /// The schedule a namespaced reference points at.
    pub fn schedule(&self, namespace: &str, name: &str) -> Option<&OnCallSchedule> {
        self.schedules
            .iter()
            .find(|s| s.name_any() == name && namespace_of(*s) == namespace)
    }
}

/// Namespace and name of a manifest, for locating it.
trait Located {
    fn namespace(&self) -> String;
    fn name(&self) -> String;
}

impl<K: ResourceExt> Located for K {
    fn namespace(&self) -> String {
        namespace_of(self)
    }
    fn name(&self) -> String {
        self.name_any()
    }
}

impl Origin {
    fn diagnostic(
        &self,
        kind: Option<String>,
        path: &str,
        message: String,
        category: &'static str,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            document: self.document,
            kind,
            namespace: None,
            name: None,
            path: path.to_string(),
            message,
            category,
        }
    }
}

/// The YAML files under `path` with their text.
pub fn read_sources(path: &Path) -> Result<Vec<(String, String)>, Box<Diagnostic>> {
    let io_error = |file: &Path, error: std::io::Error| {
        Box::new(Diagnostic {
            file: file.display().to_string(),
            document: 0,
            kind: None,
            namespace: None,
            name: None,
            path: String::new(),
            message: error.to_string(),
            category: "file",
        })
    };
    let files = crate::cli::yaml_files(&path.to_path_buf()).map_err(|e| io_error(path, e))?;
    let mut sources = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io_error(&file, e))?;
        sources.push((file.display().to_string(), text));
    }
    Ok(sources)
}

/// The namespace of a manifest; `default` where the manifest leaves it to kubectl.
pub fn namespace_of<K: ResourceExt>(object: &K) -> String {
    object.namespace().unwrap_or_else(|| "default".to_string())
}

/// `namespace/name` of a manifest.
pub fn qualified<K: ResourceExt>(object: &K) -> String {
    format!("{}/{}", namespace_of(object), object.name_any())
}
