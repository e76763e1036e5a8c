#!/usr/bin/env bash
# The release artifacts, in one directory: the container image archive (scripts/image.sh), the
# packaged chart (.tgz, made by real Helm) and the CRDs YAML. Prints the image digest last.
#
#   scripts/release.sh [--out DIR] [--binary FILE]
#
#   --out     default target/release-artifacts
#   --binary  package this alertcall binary instead of a fresh `cargo build --release`
#             (the tests pass theirs)
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "$0")/.."
# Paths given on the command line are the caller's, not the repository's.
from_caller() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER_DIR/$1" ;; esac; }

OUT="target/release-artifacts"
BINARY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$(from_caller "${2:?--out needs a directory}")"; shift 2 ;;
    --binary) BINARY="$(from_caller "${2:?--binary needs a file}")"; shift 2 ;;
    *) echo "release.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
APP_VERSION="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/alertcall/Chart.yaml)"
if [ "$VERSION" != "$APP_VERSION" ]; then
  echo "release.sh: Cargo.toml version $VERSION differs from the chart's appVersion $APP_VERSION" >&2
  exit 1
fi
if [ -z "$BINARY" ]; then
  cargo build --release --locked --bin alertcall >&2
  BINARY="${CARGO_TARGET_DIR:-target}/release/alertcall"
fi

mkdir -p "$OUT"
rm -f "$OUT"/alertcall-*.tgz "$OUT"/alertcall-image-*.oci.tar "$OUT"/alertcall-crds.yaml
"$BINARY" crd >"$OUT/alertcall-crds.yaml"
PYTHON="$(scripts/helm-env.sh)"
CHART_TGZ="$("$PYTHON" scripts/helm.py package charts/alertcall --destination "$OUT")"
DIGEST="$(scripts/image.sh --binary "$BINARY" --out "$OUT/alertcall-image-$VERSION.oci.tar" | tail -n 1)"
rm -rf "$OUT/alertcall-image-$VERSION"

cat >&2 <<DONE
release.sh: alertcall $VERSION in $OUT
  chart:  $CHART_TGZ
  CRDs:   $OUT/alertcall-crds.yaml
  image:  $OUT/alertcall-image-$VERSION.oci.tar ($DIGEST)
DONE
echo "$DIGEST"
