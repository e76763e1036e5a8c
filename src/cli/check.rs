//! `alertcall check -f DIR`: offline validation of policies and routes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kube::ResourceExt;
use serde::Deserialize;

use crate::api::{self, AlertCall, AlertRoute, CallPolicy};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// A directory of YAML manifests (or one file).
    #[arg(short = 'f', long = "filename")]
    pub path: PathBuf,
}

/// The alertcall resources found in a set of manifests.
#[derive(Debug, Default)]
pub struct Manifests {
    pub policies: Vec<CallPolicy>,
    pub routes: Vec<AlertRoute>,
    pub calls: Vec<AlertCall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

impl Manifests {
    /// Parses every YAML document; documents of other kinds are skipped. Each error names the
    /// source and the document number.
    pub fn parse(sources: &[(String, String)]) -> Result<Self, Vec<String>> {
        let mut manifests = Manifests::default();
        let mut errors = Vec::new();
        for (source, text) in sources {
            for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
                let place = format!("{source} (document {})", index + 1);
                let value = match serde_yaml::Value::deserialize(document) {
                    Ok(serde_yaml::Value::Null) => continue,
                    Ok(value) => value,
                    Err(error) => {
                        errors.push(format!("{place}: not YAML: {error}"));
                        continue;
                    }
                };
                if let Err(error) = manifests.add(value) {
                    errors.push(format!("{place}: {error}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(manifests)
        } else {
            Err(errors)
        }
    }

    fn add(&mut self, value: serde_yaml::Value) -> Result<(), serde_yaml::Error> {
        let meta: TypeMeta = serde_yaml::from_value(value.clone())?;
        let ours = meta.api_version == format!("{}/{}", api::GROUP, api::VERSION);
        match (ours, meta.kind.as_str()) {
            (true, "CallPolicy") => self.policies.push(serde_yaml::from_value(value)?),
            (true, "AlertRoute") => self.routes.push(serde_yaml::from_value(value)?),
            (true, "AlertCall") => self.calls.push(serde_yaml::from_value(value)?),
            _ => {}
        }
        Ok(())
    }

    /// Reads the YAML files under `path`.
    pub fn load(path: &Path) -> Result<Self, Vec<String>> {
        let files = super::yaml_files(&path.to_path_buf())
            .map_err(|error| vec![format!("{}: {error}", path.display())])?;
        let mut sources = Vec::new();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => sources.push((file.display().to_string(), text)),
                Err(error) => return Err(vec![format!("{}: {error}", file.display())]),
            }
        }
        Self::parse(&sources)
    }

    /// The policy a namespaced reference points at.
    pub fn policy(&self, namespace: &str, name: &str) -> Option<&CallPolicy> {
        self.policies
            .iter()
            .find(|p| p.name_any() == name && namespace_of(*p) == namespace)
    }

    /// Every semantic problem, as `Kind namespace/name: field: message` lines.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for policy in &self.policies {
            for problem in api::validate::call_policy(&policy.spec) {
                problems.push(format!("CallPolicy {}: {problem}", qualified(policy)));
            }
        }
        for route in &self.routes {
            for problem in api::validate::alert_route(&route.spec) {
                problems.push(format!("AlertRoute {}: {problem}", qualified(route)));
            }
            let policy = &route.spec.policy_ref.name;
            if self.policy(&namespace_of(route), policy).is_none() {
                problems.push(format!(
                    "AlertRoute {}: spec.policyRef: no CallPolicy {policy:?} in namespace {:?}",
                    qualified(route),
                    namespace_of(route)
                ));
            }
        }
        problems
    }
}

/// The namespace of a manifest; `default` where the manifest leaves it to kubectl.
pub fn namespace_of<K: ResourceExt>(object: &K) -> String {
    object.namespace().unwrap_or_else(|| "default".to_string())
}

/// `namespace/name` of a manifest.
pub fn qualified<K: ResourceExt>(object: &K) -> String {
    format!("{}/{}", namespace_of(object), object.name_any())
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let manifests = match Manifests::load(&args.path) {
        Ok(manifests) => manifests,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let problems = manifests.problems();
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    println!(
        "{} CallPolicy, {} AlertRoute, {} AlertCall checked: {}",
        manifests.policies.len(),
        manifests.routes.len(),
        manifests.calls.len(),
        if problems.is_empty() {
            "no problems".to_string()
        } else {
            format!("{} problem(s)", problems.len())
        }
    );
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: alertcall.dev/v1alpha1
kind: CallPolicy
metadata: {name: p, namespace: ns}
spec:
  twilio: {credentialsSecretRef: {name: t}, from: "+15005550006"}
  recipients: [{name: a, phone: "+15005550101"}]
"#;

    fn parse(text: &str) -> Result<Manifests, Vec<String>> {
        Manifests::parse(&[("test.yaml".into(), text.into())])
    }

    #[test]
    fn defaults_apply_when_sections_are_omitted() {
        let manifests = parse(POLICY).unwrap_or_default();
        assert_eq!(manifests.policies.len(), 1);
        assert_eq!(manifests.policies[0].spec.strategy.rounds, 3);
        assert!(manifests.problems().is_empty());
    }

    #[test]
    fn other_kinds_are_skipped() {
        let text = format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\n---\n{POLICY}");
        let manifests = parse(&text).unwrap_or_default();
        assert_eq!(manifests.policies.len(), 1);
    }

    #[test]
    fn two_address_kinds_name_the_document() {
        let text = POLICY.replace(
            r#"phone: "+15005550101""#,
            r#"phone: "+15005550101", client: a"#,
        );
        let errors = parse(&text).err().unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("test.yaml (document 1)"),
            "{errors:?}"
        );
    }

    #[test]
    fn route_to_a_missing_policy_is_a_problem() {
        let route = r#"
apiVersion: alertcall.dev/v1alpha1
kind: AlertRoute
metadata: {name: r, namespace: ns}
spec:
  policyRef: {name: missing}
  kubernetesEvents: {types: [Warning]}
"#;
        let manifests = parse(&format!("{POLICY}---\n{route}")).unwrap_or_default();
        let problems = manifests.problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("spec.policyRef"), "{problems:?}");
    }

    #[test]
    fn shipped_examples_have_no_problems() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let manifests = Manifests::load(&dir).unwrap_or_default();
        assert_eq!(manifests.policies.len(), 2);
        assert_eq!(manifests.routes.len(), 2);
        assert_eq!(manifests.problems(), Vec::<String>::new());
    }
}
