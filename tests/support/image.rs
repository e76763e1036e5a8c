//! The container image of `scripts/image.sh`, built from the binary `cargo test` already built
//! (a release build would double the CI time), and run with runc as a kubelet would run the
//! chart's container. Needs skopeo, umoci and runc (`scripts/container-tools.sh`) and root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// An image built by `scripts/image.sh`: the archive, its OCI layout and its manifest digest.
#[derive(Clone, Debug)]
pub struct Image {
    pub archive: PathBuf,
    pub layout: PathBuf,
    pub digest: String,
}

impl Image {
    /// The tag the layout's index names, for `umoci unpack --image LAYOUT:TAG`.
    pub fn tag(&self) -> String {
        let index = read_json(&self.layout.join("index.json"));
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or_else(|| panic!("index.json names no tag: {index}"))
            .to_string()
    }

    pub fn index(&self) -> Value {
        read_json(&self.layout.join("index.json"))
    }

    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.layout.join("blobs/sha256").join(hex)
    }

    pub fn manifest(&self) -> Value {
        read_json(&self.blob(&self.digest))
    }

    /// The image configuration (User, Entrypoint, Env, Labels under `config`).
    pub fn config(&self) -> Value {
        let manifest = self.manifest();
        let digest = manifest["config"]["digest"].as_str().unwrap_or_default();
        read_json(&self.blob(digest))
    }

    /// Paths in the image's one layer, as `tar` lists them (no leading slash).
    pub fn files(&self) -> Vec<String> {
        let manifest = self.manifest();
        let digest = manifest["layers"][0]["digest"].as_str().unwrap_or_default();
        let listing = run(Command::new("tar").arg("-tzf").arg(self.blob(digest)));
        listing.lines().map(str::to_string).collect()
    }
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Runs a command to completion: its stdout, or a panic with its stderr.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Fails the test with what to do when a tool `scripts/test.sh` installs is missing; the image
/// tests never skip.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        panic!(
            "{tool} is not installed: run scripts/container-tools.sh (scripts/test.sh runs it), \
             which installs skopeo, umoci and runc from Debian"
        );
    }
}

/// runc and umoci create namespaces, mounts and files owned by other users: root only.
pub fn require_root() {
    let uid = run(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        panic!("running the image needs root (runc, umoci unpack); this test runs as uid {uid}");
    }
}

/// Runs `scripts/image.sh` on the test build of the binary, writing `out` (`*.oci.tar`).
pub fn build(out: &Path) -> Image {
    require("strip");
    let script = super::repo_root().join("scripts/image.sh");
    let stdout = run(Command::new("bash")
        .arg(script)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_alertcall"))
        .arg("--out")
        .arg(out)
        .current_dir(super::repo_root()));
    let digest = stdout
        .lines()
        .last()
        .filter(|line| line.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("scripts/image.sh printed no digest: {stdout}"))
        .to_string();
    let layout = PathBuf::from(out.to_string_lossy().trim_end_matches(".oci.tar"));
    Image {
        archive: out.to_path_buf(),
        layout,
        digest,
    }
}

static SHARED: OnceLock<Image> = OnceLock::new();

/// The image every test of a test binary shares, built once.
pub fn shared() -> Image {
    SHARED
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image");
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            build(&dir.join("alertcall-image.oci.tar"))
        })
        .clone()
}

/// An OCI runtime bundle unpacked from the image by umoci: `config.json` is what the image's
/// configuration says (user, entrypoint, env), ready to be shaped like a kubelet's container.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn unpack(image: &Image) -> Self {
        require("umoci");
        require_root();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary dir: {e}"));
        let bundle = dir.path().join("bundle");
        run(Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{}", image.layout.display(), image.tag()))
            .arg(&bundle));
        let mut config = read_json(&bundle.join("config.json"));
        // NB: runc run refuses a terminal when its stdio is not one (a test's never is).
        config["process"]["terminal"] = Value::Bool(false);
        Self { dir, config }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    /// Drops the network namespace, so the container shares the host's loopback (the test's
    /// API server and simulator listen there), as a hostNetwork Pod would.
    pub fn host_network(&mut self) {
        if let Some(namespaces) = self.config["linux"]["namespaces"].as_array_mut() {
            namespaces.retain(|n| n["type"] != "network");
        }
    }

    pub fn bind_mount(&mut self, source: &Path, destination: &str) {
        let mount = serde_json::json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", "ro", "nosuid", "nodev"],
        });
        match self.config["mounts"].as_array_mut() {
            Some(mounts) => mounts.push(mount),
            None => self.config["mounts"] = Value::Array(vec![mount]),
        }
    }

    fn write(&self) {
        let path = self.path().join("config.json");
        std::fs::write(&path, self.config.to_string())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Runs the bundle to completion: (exit success, stdout, stderr).
    pub fn run_to_end(&self, id: &str) -> (bool, String, String) {
        require("runc");
        self.write();
        let state = self.dir.path().join("runc");
        let output = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .arg("run")
            .arg("--bundle")
            .arg(self.path())
            .arg(id)
            .output()
            .unwrap_or_else(|e| panic!("cannot run runc: {e}"));
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["delete", "--force", id])
            .output();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    }

    /// Starts the bundle in the background; the container is killed and deleted when the
    /// returned value drops, also when the test panics.
    pub fn start(self, id: &str) -> Container {
        require("runc");
        self.write();
        let state = self.dir.path().join("runc");
        let log = self.dir.path().join("container.log");
        let log_file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating the log: {e}"));
        let err_file = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("the log: {e}"));
        let child = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .arg("run")
            .arg("--bundle")
            .arg(self.path())
            .arg(id)
            .stdin(std::process::Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start runc: {e}"));
        Container {
            bundle: self,
            id: id.to_string(),
            state,
            log,
            child: std::sync::Mutex::new(child),
        }
    }
}

/// A container started by [`Bundle::start`].
pub struct Container {
    bundle: Bundle,
    id: String,
    state: PathBuf,
    pub log: PathBuf,
    // NB: behind a lock so that polling for the exit needs no `&mut`, which a wait's closure
    // could not hold.
    child: std::sync::Mutex<std::process::Child>,
}

impl Container {
    /// What the container printed so far (the operator logs to stderr).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The host pid of the container's process, once runc reports it running.
    pub fn pid(&self) -> Option<u32> {
        let output = Command::new("runc")
            .arg("--root")
            .arg(&self.state)
            .args(["state", &self.id])
            .output()
            .ok()?;
        let state: Value = serde_json::from_slice(&output.stdout).ok()?;
        (state["status"] == "running")
            .then(|| state["pid"].as_u64())
            .flatten()
            .and_then(|pid| u32::try_from(pid).ok())
    }

    /// Whether the container's process exited (then its logs say why).
    pub fn exited(&self) -> bool {
        self.child
            .lock()
            .map(|mut child| matches!(child.try_wait(), Ok(Some(_))))
            .unwrap_or(false)
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Sends `signal` (`TERM`, `KILL`) to the container's process, as a kubelet stopping it.
    pub fn signal(&self, signal: &str) {
        run(Command::new("runc")
            .arg("--root")
            .arg(&self.state)
            .args(["kill", &self.id, signal]));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&self.state)
            .args(["kill", &self.id, "KILL"])
            .output();
        if let Ok(mut child) = self.child.lock() {
            let _ = child.wait();
        }
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", &self.id])
            .output();
    }
}
