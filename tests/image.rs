//! The container image: `scripts/image.sh` builds it reproducibly, the Dockerfile describes the
//! same image, the chart's default image is that image, and the chart's Pod, run from the image
//! with runc the way a kubelet would run it, pages through the simulator.
//!
//! Needs skopeo, umoci, runc and containerd (`scripts/container-tools.sh`, run by
//! `scripts/test.sh`) and root.
//!
//! NB: the Pod runs under runc, shaped as a kubelet would shape it, not under a kubelet. Debian
//! ships no kubelet (only kubectl, from the 1.20 source the test API server is built from), the
//! test control plane runs no scheduler, and a CRI Pod needs a sandbox (pause) image that no
//! registry here can serve.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::image::{self, Bundle};

const CHART: &str = "charts/alertcall";

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn two_builds_are_byte_identical() {
    let first = image::shared();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary dir: {e}"));
    let second = image::build(&dir.path().join("again.oci.tar"));
    assert_eq!(first.digest, second.digest);
    assert_eq!(sha256(&first.archive), sha256(&second.archive));
}

#[test]
fn skopeo_inspect_shows_user_entrypoint_and_labels() {
    image::require("skopeo");
    let image = image::shared();
    let reference = format!("oci-archive:{}", image.archive.display());
    let config: Value = serde_json::from_str(&image::run(
        Command::new("skopeo").args(["inspect", "--config", &reference]),
    ))
    .unwrap_or_else(|e| panic!("skopeo inspect --config: {e}"));
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/usr/local/bin/alertcall"])
    );
    let inspect: Value = serde_json::from_str(&image::run(
        Command::new("skopeo").args(["inspect", &reference]),
    ))
    .unwrap_or_else(|e| panic!("skopeo inspect: {e}"));
    assert_eq!(inspect["Digest"], image.digest.as_str());
    let labels = &inspect["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let head = image::run(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(support::repo_root()),
    );
    assert_eq!(labels["org.opencontainers.image.revision"], head.trim());
    let source = labels["org.opencontainers.image.source"]
        .as_str()
        .unwrap_or_default();
    assert!(source.starts_with("https://"), "{labels}");
}

#[test]
fn version_runs_as_nonroot_with_a_read_only_root() {
    let image = image::shared();
    let mut bundle = Bundle::unpack(&image);
    // umoci takes the user from the image's `User`; nothing here sets it.
    assert_eq!(bundle.config["process"]["user"]["uid"], 65532);
    assert_eq!(bundle.config["process"]["user"]["gid"], 65532);
    bundle.config["root"]["readonly"] = json!(true);
    if let Some(args) = bundle.config["process"]["args"].as_array_mut() {
        args.push(json!("--version"));
    }
    let (ok, stdout, stderr) =
        bundle.run_to_end(&format!("alertcall-version-{}", std::process::id()));
    assert!(
        ok,
        "alertcall --version in the image failed:\n{stdout}{stderr}"
    );
    assert_eq!(
        stdout.trim(),
        format!("alertcall {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The last stage of a Dockerfile: instruction (upper case) and its arguments, in order, with
/// continuation lines joined.
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((keyword.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    let last_from = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .unwrap_or_else(|| panic!("the Dockerfile has no FROM"));
    instructions.split_off(last_from)
}

#[test]
fn dockerfile_describes_the_same_image() {
    let dockerfile = std::fs::read_to_string(support::repo_root().join("Dockerfile"))
        .unwrap_or_else(|e| panic!("reading Dockerfile: {e}"));
    let stage = final_stage(&dockerfile);
    let value = |keyword: &str| -> Vec<String> {
        stage
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let image = image::shared();
    let config = image.config();

    assert_eq!(
        value("USER"),
        vec![config["config"]["User"].as_str().unwrap_or_default()]
    );
    let entrypoints = value("ENTRYPOINT");
    assert_eq!(entrypoints.len(), 1, "one ENTRYPOINT in the final stage");
    let entrypoint: Value = serde_json::from_str(&entrypoints[0])
        .unwrap_or_else(|e| panic!("ENTRYPOINT must be the JSON (exec) form: {e}"));
    assert_eq!(entrypoint, config["config"]["Entrypoint"]);

    // Every path the Dockerfile copies into the runtime is in the image, at the same place.
    let files = image.files();
    let copies = value("COPY");
    assert!(!copies.is_empty(), "the final stage copies the binary");
    for copy in copies {
        let destination = copy.split_whitespace().last().unwrap_or_default();
        let relative = destination.trim_start_matches('/');
        assert!(
            files.iter().any(|f| f == relative),
            "{destination} (Dockerfile) is not in the image: {files:?}"
        );
    }
    let binary = entrypoint[0].as_str().unwrap_or_default();
    assert!(files.iter().any(|f| f == binary.trim_start_matches('/')));

    // The same environment and the same label keys.
    let image_env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for env in value("ENV") {
        assert!(
            image_env.contains(&env.as_str()),
            "ENV {env} not in {image_env:?}"
        );
    }
    let image_labels: Vec<&String> = config["config"]["Labels"]
        .as_object()
        .map(|labels| labels.keys().collect())
        .unwrap_or_default();
    for label in value("LABEL") {
        for pair in label.split_whitespace() {
            let key = pair.split('=').next().unwrap_or_default();
            assert!(
                image_labels.iter().any(|k| *k == key),
                "LABEL {key} not in {image_labels:?}"
            );
        }
    }

    // The build stage's toolchain is the oldest one Cargo.toml accepts.
    let rust_version = std::fs::read_to_string(support::repo_root().join("Cargo.toml"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("Cargo.toml has no rust-version"));
    assert!(
        dockerfile.contains(&format!("rust:{rust_version}-")),
        "the Dockerfile's build stage should use rust {rust_version}"
    );
}

fn render(values: &Value) -> Vec<Value> {
    let values = values.to_string();
    let text = support::helm(&["render", CHART, "--values", &values, "--name", "alertcall"])
        .unwrap_or_else(|e| panic!("helm render: {e}"));
    support::yaml_documents(&text)
}

fn deployment(documents: &[Value]) -> &Value {
    documents
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap_or_else(|| panic!("the chart renders no Deployment"))
}

#[test]
fn one_version_number_from_cargo_to_the_chart_to_the_image() {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(support::repo_root().join(CHART).join("Chart.yaml"))
            .unwrap_or_else(|e| panic!("reading Chart.yaml: {e}")),
    )
    .unwrap_or_else(|e| panic!("Chart.yaml: {e}"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
    assert_eq!(chart["version"], version, "Chart.yaml version");

    // The chart's default image is the one scripts/image.sh names, at that version.
    let documents = render(&json!({}));
    let container = &deployment(&documents)["spec"]["template"]["spec"]["containers"][0];
    let image = image::shared();
    let index = image.index();
    let name = &index["manifests"][0]["annotations"]["io.containerd.image.name"];
    assert_eq!(container["image"], *name);
    assert!(
        name.as_str()
            .unwrap_or_default()
            .ends_with(&format!(":{version}")),
        "{name}"
    );
    // A tag in the values still wins.
    let documents =
        render(&json!({"image": {"repository": "registry.local/alertcall", "tag": "dev"}}));
    assert_eq!(
        deployment(&documents)["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/alertcall:dev"
    );
}

#[test]
fn release_script_makes_the_chart_the_crds_and_the_image() {
    let image = image::shared();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary dir: {e}"));
    let stdout = image::run(
        Command::new("bash")
            .arg(support::repo_root().join("scripts/release.sh"))
            .arg("--out")
            .arg(dir.path())
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_alertcall"))
            .current_dir(support::repo_root()),
    );
    // The same binary and commit give the same image, whatever the output path.
    assert_eq!(stdout.lines().last(), Some(image.digest.as_str()));
    let version = env!("CARGO_PKG_VERSION");
    let archive = dir
        .path()
        .join(format!("alertcall-image-{version}.oci.tar"));
    assert_eq!(sha256(&archive), sha256(&image.archive));
    let chart = dir.path().join(format!("alertcall-{version}.tgz"));
    assert!(chart.is_file(), "no packaged chart at {}", chart.display());
    let rendered = support::helm(&["render", &chart.display().to_string()])
        .unwrap_or_else(|e| panic!("the packaged chart does not render: {e}"));
    assert!(rendered.contains("kind: Deployment"));
    let crds = std::fs::read_to_string(dir.path().join("alertcall-crds.yaml"))
        .unwrap_or_else(|e| panic!("no CRDs YAML: {e}"));
    let committed = std::fs::read_to_string(support::repo_root().join("crds/alertcall.dev.yaml"))
        .unwrap_or_else(|e| panic!("crds/: {e}"));
    assert_eq!(crds, committed);
}

/// `kind load image-archive` runs `ctr images import` on each node: the archive imports under
/// the name the chart's Pod asks for, so a kind cluster runs it with no registry.
#[tokio::test]
async fn containerd_imports_the_archive_under_the_charts_image_name() {
    image::require("containerd");
    image::require("ctr");
    image::require_root();
    let image = image::shared();
    let documents = render(&json!({}));
    let wanted = deployment(&documents)["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // A containerd of this test only: its own root, state and socket, no CRI.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary dir: {e}"));
    let socket = dir.path().join("containerd.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = {:?}\n",
            dir.path().join("root"),
            dir.path().join("state"),
            socket,
        ),
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
    let log = std::fs::File::create(dir.path().join("containerd.log"))
        .unwrap_or_else(|e| panic!("containerd log: {e}"));
    let daemon = tokio::process::Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(
            log.try_clone()
                .unwrap_or_else(|e| panic!("containerd log: {e}")),
        )
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start containerd: {e}"));
    let ctr = |args: &[&str]| {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", "k8s.io"])
            .args(args);
        command
    };
    support::wait_for("containerd to answer", support::WAIT, || async {
        ctr(&["version"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| ())
    })
    .await
    .unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.path().join("containerd.log")).unwrap_or_default();
        panic!("{e}; its log:\n{log}")
    });
    // The flags kind passes.
    image::run(ctr(&["images", "import", "--all-platforms", "--digests"]).arg(&image.archive));
    let listed = image::run(&mut ctr(&["images", "ls"]));
    let line = listed
        .lines()
        .find(|l| l.split_whitespace().next() == Some(wanted.as_str()))
        .unwrap_or_else(|| panic!("{wanted} is not among the imported images:\n{listed}"));
    assert!(line.contains(&image.digest), "{line}");
    drop(daemon);
}

/// What the kubelet gives a container for these `env` entries: values as written, downward-API
/// fields from the Pod. Anything else is not something this chart uses; it fails the test.
fn container_env(container: &Value, pod: &Value) -> Vec<String> {
    let mut env = Vec::new();
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap_or_default();
        let value = if let Some(value) = entry["value"].as_str() {
            value.to_string()
        } else {
            let field = entry["valueFrom"]["fieldRef"]["fieldPath"]
                .as_str()
                .unwrap_or_else(|| panic!("env {name}: only values and fieldRefs are given here"));
            match field {
                "metadata.name" => pod["metadata"]["name"].as_str(),
                "metadata.namespace" => pod["metadata"]["namespace"].as_str(),
                other => panic!("env {name}: fieldRef {other} is not given by this test"),
            }
            .unwrap_or_default()
            .to_string()
        };
        env.push(format!("{name}={value}"));
    }
    env
}

/// The OCI process for a container: the image's entrypoint unless `command` replaces it, then
/// `args`; env appended to the image's; user, capabilities and privilege escalation from the
/// Pod's and the container's securityContext, the container's winning.
fn apply_container(bundle: &mut Bundle, pod: &Value, container: &Value, extra_env: &[String]) {
    let process = &mut bundle.config["process"];
    let mut args: Vec<Value> = match container["command"].as_array() {
        Some(command) => command.clone(),
        None => process["args"].as_array().cloned().unwrap_or_default(),
    };
    args.extend(container["args"].as_array().cloned().unwrap_or_default());
    process["args"] = Value::Array(args);
    let mut env: Vec<Value> = process["env"].as_array().cloned().unwrap_or_default();
    env.extend(
        container_env(container, pod)
            .into_iter()
            .chain(extra_env.iter().cloned())
            .map(Value::String),
    );
    process["env"] = Value::Array(env);

    let pod_security = &pod["spec"]["securityContext"];
    let security = &container["securityContext"];
    let pick = |field: &str| {
        if security[field].is_null() {
            pod_security[field].clone()
        } else {
            security[field].clone()
        }
    };
    if let Some(uid) = pick("runAsUser").as_u64() {
        process["user"]["uid"] = json!(uid);
    }
    if let Some(gid) = pick("runAsGroup").as_u64() {
        process["user"]["gid"] = json!(gid);
    }
    if pick("runAsNonRoot") == json!(true) {
        assert_ne!(process["user"]["uid"], 0, "runAsNonRoot with uid 0");
    }
    let drop: Vec<&str> = security["capabilities"]["drop"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let add: Vec<Value> = security["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|c| json!(format!("CAP_{c}")))
        .collect();
    if let Some(sets) = process["capabilities"].as_object_mut() {
        for set in sets.values_mut() {
            if let Some(caps) = set.as_array_mut() {
                if drop.contains(&"ALL") {
                    caps.clear();
                } else {
                    caps.retain(|c| {
                        !drop
                            .iter()
                            .any(|d| c.as_str() == Some(format!("CAP_{d}").as_str()))
                    });
                }
                caps.extend(add.iter().cloned());
            }
        }
    }
    process["noNewPrivileges"] = json!(security["allowPrivilegeEscalation"] != json!(true));
    bundle.config["root"]["readonly"] = json!(security["readOnlyRootFilesystem"] == json!(true));
    bundle.config["hostname"] = pod["metadata"]["name"].clone();
}

/// `/proc/PID/status` fields of the container's process.
fn proc_status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Mount options of `/` as the container's process sees it.
fn root_mount_options(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(4) == Some(&"/"))
        .and_then(|fields| fields.get(5).map(|o| o.to_string()))
        .unwrap_or_default()
}

mod pod {
    use alertcall::api::{AlertCall, AlertRoute, CallPolicy, Phase};
    use alertcall::twilio::sim::{Outcome, Recipient, Script, SimConfig, SimHandle, Simulator};
    use k8s_openapi::api::core::v1::{Event, Pod, Secret};
    use kube::api::{Api, DeleteParams, ListParams, PostParams};
    use kube::Client;
    use serde_json::{json, Value};

    use super::support;
    use super::support::image::{self, Bundle, Container, Image};

    const ACCOUNT: &str = "AC00000000000000000000000000000c5b";
    const TOKEN: &str = "image-test-token";
    const FROM: &str = "+15005550006";
    const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

    async fn create<K>(client: &Client, namespace: &str, object: Value)
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + serde::Serialize,
        K::DynamicType: Default,
    {
        let object: K = serde_json::from_value(object).unwrap_or_else(|e| panic!("object: {e}"));
        Api::<K>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating {object:?}: {e}"));
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"))
    }

    /// The files of the Secret volume the kubelet would mount at the ServiceAccount path: the
    /// token the controller-manager minted for the chart's ServiceAccount, its CA, the namespace.
    async fn service_account_volume(admin: &Client, pod: &Value, dir: &std::path::Path) {
        let container = &pod["spec"]["containers"][0];
        let volume_name = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == TOKEN_PATH)
            .and_then(|m| m["name"].as_str())
            .unwrap_or_else(|| panic!("the Pod mounts no ServiceAccount token: {container}"));
        let secret_name = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == volume_name)
            .and_then(|v| v["secret"]["secretName"].as_str())
            .unwrap_or_else(|| panic!("volume {volume_name} is not a Secret"));
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let secret = Api::<Secret>::namespaced(admin.clone(), namespace)
            .get(secret_name)
            .await
            .unwrap_or_else(|e| panic!("reading token Secret {secret_name}: {e}"));
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("token dir: {e}"));
        for (key, value) in secret.data.unwrap_or_default() {
            std::fs::write(dir.join(&key), &value.0)
                .unwrap_or_else(|e| panic!("writing {key}: {e}"));
        }
        for key in ["token", "ca.crt", "namespace"] {
            assert!(dir.join(key).is_file(), "the token Secret has no {key}");
        }
        // The kubelet's Secret volumes are world-readable (defaultMode 0644) in a 0755 dir, so
        // uid 65532 can read them.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("token dir mode: {e}"));
    }

    fn probe_url(container: &Value, probe: &str) -> String {
        let get = &container[probe]["httpGet"];
        let port = match &get["port"] {
            Value::Number(n) => n.as_u64().unwrap_or_default(),
            Value::String(name) => container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("{probe}: no port named {name}")),
            other => panic!("{probe}: port {other}"),
        };
        let path = get["path"].as_str().unwrap_or("/");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// The API server the tests run, as `KUBERNETES_SERVICE_HOST`/`PORT` would name it.
    fn api_server() -> (String, u16) {
        let text = std::fs::read_to_string(support::kubeconfig())
            .unwrap_or_else(|e| panic!("kubeconfig: {e}"));
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .and_then(|s| url::Url::parse(s.trim()).ok())
            .unwrap_or_else(|| panic!("kubeconfig names no server"));
        (
            server.host_str().unwrap_or_default().to_string(),
            server.port().unwrap_or(443),
        )
    }

    /// Runs the Pod's container from the image as a kubelet would: entrypoint and rendered args,
    /// env with the downward-API values, the securityContext, the ServiceAccount token mounted,
    /// in-cluster configuration pointing at the test API server; the host's network.
    async fn run_pod(admin: &Client, image: &Image, pod: &Value) -> Container {
        let container = &pod["spec"]["containers"][0];
        let mut bundle = Bundle::unpack(image);
        let token_dir = bundle.dir.path().join("serviceaccount");
        service_account_volume(admin, pod, &token_dir).await;
        let (host, api_port) = api_server();
        super::apply_container(
            &mut bundle,
            pod,
            container,
            &[
                format!("KUBERNETES_SERVICE_HOST={host}"),
                format!("KUBERNETES_SERVICE_PORT={api_port}"),
            ],
        );
        bundle.host_network();
        bundle.bind_mount(&token_dir, TOKEN_PATH);
        bundle.bind_mount(std::path::Path::new("/etc/hosts"), "/etc/hosts");
        bundle.bind_mount(std::path::Path::new("/etc/resolv.conf"), "/etc/resolv.conf");
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let running = bundle.start(&format!("{pod_name}-{}", std::process::id()));
        // The probes, on the ports the chart declares, answer as the kubelet expects.
        for probe in ["livenessProbe", "readinessProbe"] {
            let url = probe_url(container, probe);
            let answered = support::within(support::WAIT, || async {
                let status = reqwest::get(&url).await.ok()?.status();
                (200..400).contains(&status.as_u16()).then_some(())
            })
            .await;
            if answered.is_none() {
                let exited = running.exited();
                panic!(
                    "{probe} {url} never answered (container exited: {exited}); its log:\n{}",
                    running.logs()
                );
            }
        }
        running
    }

    /// A live Pod of the release other than `except` (a terminating one is on its way out).
    async fn pod_of(admin: &Client, namespace: &str, except: Option<&str>) -> Value {
        let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
        let pod = support::eventually("the Deployment's Pod", || async {
            let list = pods.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|p| {
                p.metadata.deletion_timestamp.is_none() && p.metadata.name.as_deref() != except
            })
        })
        .await;
        serde_json::to_value(&pod).unwrap_or_else(|e| panic!("Pod: {e}"))
    }

    fn simulator_config(answer_after: f64, time_scale: f64) -> SimConfig {
        SimConfig {
            time_scale,
            script: Script {
                default: Recipient {
                    outcome: Outcome::Answer,
                    answer_after,
                    press: Some("1".into()),
                    hangup_after: None,
                    hangup_after_press: None,
                },
                ..Script::default()
            },
            ..SimConfig::new(ACCOUNT, TOKEN)
        }
    }

    /// Chart values for a release that watches `app` and calls through `sim`; the port is a free
    /// one because the container shares the host's network.
    fn values(app: &str, sim: &SimHandle) -> Value {
        json!({
            "service": {"port": free_port()},
            "watchNamespace": app,
            "instanceName": "image-test",
            "twilio": {"apiUrl": sim.api_url(), "serverlessUrl": sim.serverless_url()},
        })
    }

    /// `helm install` or `helm upgrade` with real Helm, under a release name of its own: the
    /// ClusterRole is named after the release, and other tests install the chart on this API
    /// server too.
    async fn helm(command: &str, release: &str, values: &Value) {
        let kubeconfig = support::kubeconfig();
        let values = values.to_string();
        support::helm_off_runtime(&[
            command,
            super::CHART,
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--name",
            release,
            "--namespace",
            release,
            "--values",
            &values,
        ])
        .await
        .unwrap_or_else(|e| panic!("helm {command}: {e}"));
    }

    async fn uninstall(release: &str) {
        let kubeconfig = support::kubeconfig();
        let _ = support::helm_off_runtime(&[
            "uninstall",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--name",
            release,
            "--namespace",
            release,
        ])
        .await;
    }

    /// The Secret, a policy calling alice, and a route paging on `reason`; waits until the
    /// operator in `running` has published the policy.
    async fn app_objects(admin: &Client, namespace: &str, reason: &str, running: &Container) {
        create::<Secret>(
            admin,
            namespace,
            json!({"metadata": {"name": "twilio"}, "stringData": {"accountSid": ACCOUNT, "authToken": TOKEN}}),
        )
        .await;
        create::<CallPolicy>(
            admin,
            namespace,
            json!({
                "apiVersion": "alertcall.dev/v1alpha1", "kind": "CallPolicy",
                "metadata": {"name": "oncall"},
                "spec": {
                    "twilio": {"credentialsSecretRef": {"name": "twilio"}, "from": FROM},
                    "recipients": [{"name": "alice", "phone": "+15005550101"}],
                    "strategy": {"ringTimeoutSeconds": 60, "rounds": 1},
                },
            }),
        )
        .await;
        create::<AlertRoute>(admin, namespace, json!({
            "apiVersion": "alertcall.dev/v1alpha1", "kind": "AlertRoute",
            "metadata": {"name": "pods"},
            "spec": {
                "policyRef": {"name": "oncall"},
                "kubernetesEvents": {"types": ["Warning"], "reasons": [reason], "involvedKinds": ["Pod"]},
            },
        }))
        .await;
        let policies: Api<CallPolicy> = Api::namespaced(admin.clone(), namespace);
        let ready = support::within(support::WAIT, || async {
            let policy = policies.get("oncall").await.ok()?;
            let conditions = policy.status.map(|s| s.conditions).unwrap_or_default();
            alertcall::api::conditions::is_true(&conditions, "Ready").then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "the CallPolicy never became Ready; the container's log:\n{}",
            running.logs()
        );
    }

    async fn labeled_event(admin: &Client, namespace: &str, reason: &str) {
        let now = jiff::Timestamp::now().to_string();
        create::<Event>(admin, namespace, json!({
            "metadata": {"name": "api-backoff"},
            "type": "Warning",
            "reason": reason,
            "message": "Back-off restarting failed container",
            "involvedObject": {"kind": "Pod", "name": "api-0", "namespace": namespace, "apiVersion": "v1"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }))
        .await;
    }

    async fn acknowledged(
        admin: &Client,
        namespace: &str,
        running: &Container,
    ) -> alertcall::api::AlertCallStatus {
        let calls: Api<AlertCall> = Api::namespaced(admin.clone(), namespace);
        let page = support::within(support::WAIT, || async {
            let list = calls.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|c| {
                c.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::Acknowledged)
            })
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no page acknowledged through the container; its log:\n{}",
                running.logs()
            )
        });
        page.status.unwrap_or_default()
    }

    fn calls_placed(sim: &SimHandle) -> usize {
        sim.ledger()
            .entries
            .iter()
            .filter(|e| matches!(e.event, alertcall::twilio::sim::Event::CallCreated { .. }))
            .count()
    }

    /// The policy's finalizer undoes its Twilio configuration, so it goes while an operator
    /// runs; otherwise the namespace would hang in Terminating.
    async fn delete_policy(admin: &Client, namespace: &str) {
        let policies: Api<CallPolicy> = Api::namespaced(admin.clone(), namespace);
        let _ = policies.delete("oncall", &Default::default()).await;
        support::eventually("the CallPolicy's cleanup", || async {
            matches!(policies.get_opt("oncall").await, Ok(None)).then_some(())
        })
        .await;
    }

    // NB: unpacking and starting a container blocks its thread for seconds; a second worker
    // keeps the simulator answering meanwhile, as Twilio would.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_charts_pod_runs_from_the_image_and_pages() {
        let image = image::shared();
        let admin = support::client().await;
        let release = support::TestNamespace::new(&admin, "image").await;
        let app =
            support::TestNamespace::with_labels(&admin, "image-app", &[("alerting", "enabled")])
                .await;
        let sim = Simulator::start(simulator_config(2.0, 20.0))
            .await
            .unwrap_or_else(|e| panic!("simulator: {e}"));
        sim.add_number(FROM);
        helm("install", &release.name, &values(&app.name, &sim)).await;

        // The Pod the Deployment's ReplicaSet created: its name and namespace are what the
        // downward API gives, its Secret volume is the token the kubelet would mount. No kubelet
        // runs here, so it stays Pending and this test runs its container.
        let pod = pod_of(&admin, &release.name, None).await;
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            image.index()["manifests"][0]["annotations"]["io.containerd.image.name"],
            "the chart's Pod runs this image"
        );
        let running = run_pod(&admin, &image, &pod).await;

        // The securityContext, as the running process has it.
        let pid = running
            .pid()
            .unwrap_or_else(|| panic!("runc reports no running container:\n{}", running.logs()));
        let status = super::proc_status(pid);
        let uid = pod["spec"]["securityContext"]["runAsUser"].to_string();
        assert_eq!(
            status
                .get("Uid")
                .map(|u| u.split_whitespace().collect::<Vec<_>>()),
            Some(vec![uid.as_str(); 4])
        );
        assert_eq!(
            status.get("CapEff").map(String::as_str),
            Some("0000000000000000")
        );
        assert_eq!(
            status.get("CapPrm").map(String::as_str),
            Some("0000000000000000")
        );
        assert_eq!(status.get("NoNewPrivs").map(String::as_str), Some("1"));
        let root = super::root_mount_options(pid);
        assert!(root.split(',').any(|o| o == "ro"), "root mounted {root}");

        // Paging through the container: policy published, a labeled Event, a call, a keypress.
        app_objects(&admin, &app.name, "ImageTestBackOff", &running).await;
        labeled_event(&admin, &app.name, "ImageTestBackOff").await;
        let status = acknowledged(&admin, &app.name, &running).await;
        assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
        assert_eq!(status.attempt_count, 1);
        assert_eq!(calls_placed(&sim), 1, "one call placed");
        let logs = running.logs();
        // POD_NAME from the downward API is the replica's identity.
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        assert!(logs.contains(&format!("identity={pod_name}")), "{logs}");
        // Logs go to a pipe, as under a kubelet: plain text, no terminal colour codes.
        assert!(
            !logs.contains('\u{1b}'),
            "colour codes in the container's log:\n{logs}"
        );

        delete_policy(&admin, &app.name).await;
        drop(running);
        app.delete().await;
        sim.shutdown().await;
        uninstall(&release.name).await;
        release.delete().await;
    }

    /// `helm upgrade` with a changed value while a call is ringing: the Deployment replaces its
    /// Pod (Recreate: the old one stops first), and this test does what a kubelet would: SIGTERM
    /// to the old container, the Pod deleted once it exited, the new Pod's container started.
    /// The new operator goes on with the page: acknowledged, and nobody called twice.
    // NB: unpacking and starting a container blocks its thread for seconds; a second worker
    // keeps the simulator answering meanwhile, as Twilio would.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn helm_upgrade_with_a_page_live_keeps_paging() {
        let image = image::shared();
        let admin = support::client().await;
        let release = support::TestNamespace::new(&admin, "upgrade").await;
        let app =
            support::TestNamespace::with_labels(&admin, "upgrade-app", &[("alerting", "enabled")])
                .await;
        // Alice picks up 20 s after the call is placed: the upgrade happens while it rings.
        let sim = Simulator::start(simulator_config(20.0, 1.0))
            .await
            .unwrap_or_else(|e| panic!("simulator: {e}"));
        sim.add_number(FROM);
        let mut values = values(&app.name, &sim);
        helm("install", &release.name, &values).await;
        let old_pod = pod_of(&admin, &release.name, None).await;
        let old = run_pod(&admin, &image, &old_pod).await;
        app_objects(&admin, &app.name, "UpgradeTestBackOff", &old).await;
        labeled_event(&admin, &app.name, "UpgradeTestBackOff").await;
        let calls: Api<AlertCall> = Api::namespaced(admin.clone(), &app.name);
        let ringing = support::within(support::WAIT, || async {
            let list = calls.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.phase == Phase::Calling && s.attempts.iter().any(|a| a.call_sid.is_some())
                })
            })
        })
        .await;
        assert!(
            ringing.is_some(),
            "no call placed before the upgrade; the container's log:\n{}",
            old.logs()
        );

        values["logLevel"] = json!("debug");
        helm("upgrade", &release.name, &values).await;
        let pods: Api<Pod> = Api::namespaced(admin.clone(), &release.name);
        let old_name = old_pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // NB: a Pod bound to no node (no scheduler runs here) is deleted at once, not marked
        // Terminating; either way its container is to stop.
        support::eventually("the old Pod to be deleted", || async {
            match pods.get_opt(&old_name).await.ok()? {
                None => Some(()),
                Some(pod) => pod.metadata.deletion_timestamp.map(|_| ()),
            }
        })
        .await;
        old.signal("TERM");
        let grace = old_pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        let stopped = support::within(std::time::Duration::from_secs(grace), || async {
            old.exited().then_some(())
        })
        .await;
        assert!(
            stopped.is_some(),
            "the old container outlived its grace period after SIGTERM:\n{}",
            old.logs()
        );
        // What the kubelet does once the container stopped; the Pod may already be gone.
        let _ = pods
            .delete(&old_name, &DeleteParams::default().grace_period(0))
            .await;

        let new_pod = pod_of(&admin, &release.name, Some(&old_name)).await;
        let env = &new_pod["spec"]["containers"][0]["env"];
        assert!(
            env.as_array()
                .into_iter()
                .flatten()
                .any(|e| e["name"] == "RUST_LOG" && e["value"] == "debug"),
            "the upgraded value is not in the new Pod: {env}"
        );
        let new = run_pod(&admin, &image, &new_pod).await;
        let status = acknowledged(&admin, &app.name, &new).await;
        assert_eq!(status.acknowledged_by.as_deref(), Some("alice"));
        assert_eq!(status.attempt_count, 1, "{status:#?}");
        assert_eq!(
            calls_placed(&sim),
            1,
            "called twice across the upgrade; the new container's log:\n{}",
            new.logs()
        );

        delete_policy(&admin, &app.name).await;
        drop(new);
        drop(old);
        app.delete().await;
        sim.shutdown().await;
        uninstall(&release.name).await;
        release.delete().await;
    }
}
