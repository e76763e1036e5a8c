#!/usr/bin/env bash
# Installs from Debian what the image tests need (tests/image.rs): skopeo (inspects the
# oci-archive), umoci (unpacks it into a runtime bundle), runc (runs that bundle as the chart's
# container would run) and containerd (imports the archive as `kind load image-archive` does).
# No Docker daemon, no registry. Idempotent.
set -euo pipefail
need=()
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
command -v runc >/dev/null || need+=(runc)
command -v containerd >/dev/null || need+=(containerd)
command -v strip >/dev/null || need+=(binutils)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ "${#need[@]}" -gt 0 ]; then
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  printf 'container-tools: installing %s\n' "${need[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
