//! Shared harness of the integration tests: one real control plane (etcd + kube-apiserver +
//! kube-controller-manager on loopback, provisioned by `scripts/control-plane.sh`) per test run,
//! the CRDs installed once, and a fresh namespace per test.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod image;
pub mod paging;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use alertcall::api::{AlertRoute, CallPolicy};

pub const FIELD_MANAGER: &str = "alertcall-tests";

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

static KUBECONFIG: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Starts (or reuses) the control plane and installs the CRDs; the path of its kubeconfig.
pub fn kubeconfig() -> PathBuf {
    match try_kubeconfig() {
        Ok(path) => path,
        Err(error) => panic!("the test control plane is not available: {error}"),
    }
}

/// [`kubeconfig`], or why the control plane is not available (benchmarks report it and skip).
pub fn try_kubeconfig() -> Result<PathBuf, String> {
    KUBECONFIG
        .get_or_init(|| {
            // NB: provisioning runs its own runtime, so it happens on a plain thread, outside the
            // test's runtime, exactly once per test binary.
            std::thread::spawn(provision)
                .join()
                .unwrap_or_else(|_| Err("provisioning thread panicked".into()))
        })
        .clone()
}

fn provision() -> Result<PathBuf, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/control-plane.sh"))
        .arg("start")
        .output()
        .map_err(|e| format!("cannot run scripts/control-plane.sh: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "scripts/control-plane.sh start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or("scripts/control-plane.sh printed no kubeconfig path")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(install_crds(&path))?;
    Ok(path)
}

async fn install_crds(kubeconfig: &Path) -> Result<(), String> {
    let client = client_from(kubeconfig).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for crd in alertcall::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| format!("applying CRD {name}: {e}"))?;
    }
    for crd in alertcall::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .map_err(|_| format!("CRD {name} not Established within 30s"))?
            .map_err(|e| format!("waiting for CRD {name}: {e}"))?;
    }
    Ok(())
}

async fn client_from(kubeconfig: &Path) -> Result<Client, String> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// A client of the test control plane, bound to the calling test's runtime.
pub async fn client() -> Client {
    match try_client().await {
        Ok(client) => client,
        Err(error) => panic!("{error}"),
    }
}

/// [`client`], or why there is none.
pub async fn try_client() -> Result<Client, String> {
    let path = try_kubeconfig()
        .map_err(|error| format!("the test control plane is not available: {error}"))?;
    client_from(&path)
        .await
        .map_err(|error| format!("cannot build a client for the test control plane: {error}"))
}

/// A namespace of one test; labels let a test select it with namespace selectors.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        Self::with_labels(client, prefix, &[]).await
    }

    pub async fn with_labels(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Self {
        let suffix: u32 = std::process::id() ^ (jiff::Timestamp::now().subsec_nanosecond() as u32);
        let name = format!("{prefix}-{:08x}", suffix);
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
            }
        }))
        .unwrap_or_default();
        let api: Api<Namespace> = Api::all(client.clone());
        if let Err(error) = api.create(&PostParams::default(), &namespace).await {
            panic!("creating test namespace {name}: {error}");
        }
        Self {
            name,
            client: client.clone(),
        }
    }

    /// Deletes the namespace (the controller-manager removes what is in it).
    pub async fn delete(self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
    }
}

static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Runs real Helm (`scripts/helm.py` on the Helm v4 engine from `helm-python-sdk`, provisioned by
/// `scripts/helm-env.sh`): `Ok(stdout)` or `Err(stderr)`.
pub fn helm(args: &[&str]) -> Result<String, String> {
    let python = PYTHON.get_or_init(|| {
        let output = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/helm-env.sh"))
            .output()
            .map_err(|e| format!("cannot run scripts/helm-env.sh: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).to_string());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .last()
            .map(PathBuf::from)
            .ok_or_else(|| "scripts/helm-env.sh printed no interpreter".to_string())
    });
    let python = match python {
        Ok(python) => python,
        Err(error) => panic!("Helm is not available: {error}"),
    };
    let output = std::process::Command::new(python)
        .arg(repo_root().join("scripts/helm.py"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/helm.py: {e}"));
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

/// [`helm`] on the blocking pool. An async test whose simulator or operator runs on its own
/// runtime must use this: Helm takes seconds, and run inline it would stall every request and
/// callback the simulator serves meanwhile, a delay real Twilio never adds.
pub async fn helm_off_runtime(args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        helm(&args)
    })
    .await
    .unwrap_or_else(|e| panic!("helm on the blocking pool: {e}"))
}

/// The documents of a multi-document YAML stream, as JSON values.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|document| {
            let value: serde_json::Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"));
            (!value.is_null()).then_some(value)
        })
        .collect()
}

/// How long a test waits for the operator to do something before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `probe` until it yields a value, or `None` once `limit` passed. The one bounded wait
/// of the tests: polling on observable state, never a sleep standing in for an assertion.
pub async fn within<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`within`] `limit`, or why not: what was awaited, for how long.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(limit, probe)
        .await
        .ok_or_else(|| format!("timed out after {}s waiting for {what}", limit.as_secs()))
}

/// [`within`] [`WAIT`], failing the test when it passes.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match wait_for(what, WAIT, probe).await {
        Ok(value) => value,
        Err(error) => panic!("{error}"),
    }
}

/// [`eventually`] for a condition that needs no I/O.
pub async fn until<F: FnMut() -> bool>(what: &str, mut check: F) {
    eventually(what, || std::future::ready(check().then_some(()))).await
}

/// Creates `object` (JSON) through `api`; why not, when the API server refuses it. Benchmarks
/// report that instead of panicking.
pub async fn try_create<K>(api: &Api<K>, object: serde_json::Value) -> Result<K, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).map_err(|e| format!("object: {e}"))?;
    api.create(&PostParams::default(), &object)
        .await
        .map_err(|e| format!("create {}: {e}", kube::ResourceExt::name_any(&object)))
}

/// [`try_create`], failing the test when the API server refuses.
pub async fn create<K>(api: &Api<K>, object: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    try_create(api, object)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Waits (bounded) until the operator at `addr` answers `/readyz` with 200.
pub async fn until_ready(addr: std::net::SocketAddr) {
    let url = format!("http://{addr}/readyz");
    eventually("the operator to be ready", || {
        let url = url.clone();
        async move {
            let response = reqwest::get(url).await.ok()?;
            response.status().is_success().then_some(())
        }
    })
    .await;
}

/// Wall-clock time `offset_seconds` from now as a schedule's local time in UTC
/// (`2026-12-24T09:00:00`).
pub fn utc_local(offset_seconds: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(offset_seconds);
    at.to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// A Warning Event of the benchmarks, happening now, about `kind` `object` in `namespace`.
pub fn bench_event(
    namespace: &str,
    name: &str,
    reason: &str,
    kind: &str,
    object: &str,
) -> serde_json::Value {
    let at = jiff::Timestamp::now().to_string();
    json!({
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": kind, "name": object, "namespace": namespace},
        "type": "Warning", "reason": reason, "message": format!("{reason} on {object}"), "count": 1,
        "firstTimestamp": at, "lastTimestamp": at,
        "source": {"component": "alertcall-bench"},
    })
}

/// Waits until the operator has published the documents of the benchmarks' CallPolicy
/// `oncall`. Timed pages then take the path of a working install, where the controller dials
/// from its policy cache; an unpublished policy is read from the API server at every reconcile.
pub async fn policy_published(client: &Client, namespace: &str) -> Result<(), String> {
    let policies: Api<CallPolicy> = Api::namespaced(client.clone(), namespace);
    wait_for(
        "the CallPolicy's documents published",
        Duration::from_secs(60),
        || {
            let policies = policies.clone();
            async move {
                let policy = policies.get("oncall").await.ok()?;
                policy.status?.twiml.map(|_| ())
            }
        },
    )
    .await
}

/// The benchmarks' route: Warning `BenchCrash` Events about Pods page the CallPolicy `oncall`;
/// returns once the operator reports it Ready (so Events can match it).
pub async fn crash_route_ready(client: &Client, namespace: &str) -> Result<(), String> {
    let routes: Api<AlertRoute> = Api::namespaced(client.clone(), namespace);
    try_create(
        &routes,
        json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
            "metadata": {"name": "crashes"},
            "spec": {
                "policyRef": {"name": "oncall"},
                "kubernetesEvents": {"types": ["Warning"], "reasons": ["BenchCrash"], "involvedKinds": ["Pod"]},
            }
        }),
    )
    .await?;
    wait_for(
        "the AlertRoute to be Ready",
        Duration::from_secs(60),
        || {
            let routes = routes.clone();
            async move {
                let route = routes.get("crashes").await.ok()?;
                let status = route.status?;
                (status.observed_generation == route.metadata.generation
                    && status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True"))
                .then_some(())
            }
        },
    )
    .await
}
