#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (apt packages, the
# loopback control plane, Helm's Python engine), checks formatting and lints, and runs every test.
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "provisioning the test control plane (cached after the first run)"
scripts/control-plane.sh install

step "provisioning Helm (helm-python-sdk in a cached virtualenv)"
scripts/helm-env.sh >/dev/null

step "provisioning the container tools (skopeo, umoci, runc from Debian)"
scripts/container-tools.sh

step "provisioning promtool (Debian's prometheus package)"
if ! command -v promtool >/dev/null; then
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  # NB: only promtool is used; the recommended exporters and their services are not wanted.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

step "promtool check rules / test rules (the chart's PrometheusRule)"
(cd charts/alertcall/files && promtool check rules prometheus-rules.yaml && promtool test rules prometheus-rules.test.yaml)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "starting the control plane"
# A control plane that was already running (a developer's) is left running afterwards.
if ! scripts/control-plane.sh status; then
  trap 'scripts/control-plane.sh stop' EXIT
fi
scripts/control-plane.sh start >/dev/null

step "cargo test --workspace"
cargo test --workspace --locked
