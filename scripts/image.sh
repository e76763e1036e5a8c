#!/usr/bin/env bash
# Builds the operator's container image with no Docker daemon and no base image: an OCI image
# layout and its `oci-archive` tarball (with a Docker-style manifest.json for older `docker load`).
# Two runs on the same commit and binary give byte-identical archives.
#
#   scripts/image.sh [--binary FILE] [--out FILE.oci.tar] [--repository REPO] [--tag TAG]
#
#   --binary      the alertcall binary to package (copied, then stripped). Default: build it
#                 with `cargo build --release --locked`.
#   --out         the archive (default target/alertcall-image.oci.tar); the OCI layout is written
#                 next to it, without the .oci.tar suffix (target/alertcall-image/).
#   --repository  the image name recorded for `ctr images import`/`docker load`
#                 (default ghcr.io/alertcall/alertcall, the chart's image.repository).
#   --tag         default: the version in Cargo.toml (the chart's appVersion).
#
# Environment: SOURCE_DATE_EPOCH (default: the last commit's time) for every timestamp;
# ALERTCALL_SOURCE_URL for the org.opencontainers.image.source label.
#
# The image holds the stripped binary at /usr/local/bin/alertcall, the shared libraries `ldd`
# lists for it (from this machine, so glibc is the one it was linked against), the CA bundle,
# /etc/passwd and /etc/group with nonroot (65532), and /tmp. Prints the manifest digest last.
set -euo pipefail
CALLER_DIR="$PWD"
cd "$(dirname "$0")/.."
# Paths given on the command line are the caller's, not the repository's.
from_caller() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER_DIR/$1" ;; esac; }

BINARY=""
OUT="target/alertcall-image.oci.tar"
REPOSITORY="ghcr.io/alertcall/alertcall"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
TAG=""
SOURCE_URL="${ALERTCALL_SOURCE_URL:-https://github.com/alertcall/alertcall}"
ENTRYPOINT="/usr/local/bin/alertcall"
NONROOT_ID=65532

die() { printf 'image.sh: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY="$(from_caller "${2:?--binary needs a file}")"; shift 2 ;;
    --out) OUT="$(from_caller "${2:?--out needs a file}")"; shift 2 ;;
    --repository) REPOSITORY="${2:?--repository needs a name}"; shift 2 ;;
    --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
[ -n "$VERSION" ] || die "no version found in Cargo.toml"
TAG="${TAG:-$VERSION}"
case "$OUT" in *.oci.tar) ;; *) die "--out must end in .oci.tar, got $OUT" ;; esac
LAYOUT="${OUT%.oci.tar}"

for tool in tar gzip sha256sum strip ldd; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install tar gzip coreutils binutils libc-bin)"
done
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA_BUNDLE" ] || die "$CA_BUNDLE is missing (apt-get install ca-certificates)"

REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
CREATED="$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)"

if [ -z "$BINARY" ]; then
  cargo build --release --locked --bin alertcall >&2
  BINARY="${CARGO_TARGET_DIR:-target}/release/alertcall"
fi
[ -x "$BINARY" ] || die "$BINARY is not an executable file"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
umask 022
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc/ssl/certs" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
cp "$BINARY" "$ROOTFS$ENTRYPOINT"
strip "$ROOTFS$ENTRYPOINT"
chmod 0755 "$ROOTFS$ENTRYPOINT"

# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader; each is copied
# (symlinks resolved) to the path the binary's loader will look up.
ldd "$BINARY" | awk '/=> \//{print $3} /^\t\//{print $1}' | sort -u >"$WORK/libs"
[ -s "$WORK/libs" ] || die "ldd listed no libraries for $BINARY (a static binary needs none, but then the loader line is missing too)"
while read -r lib; do
  mkdir -p "$ROOTFS$(dirname "$lib")"
  cp -L "$lib" "$ROOTFS$lib"
  chmod 0755 "$ROOTFS$lib"
done <"$WORK/libs"

cp -L "$CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/tmp:/sbin/nologin\n' \
  "$NONROOT_ID" "$NONROOT_ID" >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$NONROOT_ID" >"$ROOTFS/etc/group"
chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group"

# Same bytes for the same inputs: names sorted, one timestamp, no owner names, no atime/ctime.
reproducible_tar() {
  tar --create --file - --directory "$1" --sort=name --format=ustar --mtime="@$EPOCH" \
    --owner=0 --group=0 --numeric-owner --no-acls --no-xattrs --no-selinux "${@:2}"
}

BLOBS="$WORK/layout/blobs/sha256"
mkdir -p "$BLOBS"
blob() { # file -> moves it into blobs/ under its digest; prints the digest (hex)
  local digest
  digest="$(sha256sum "$1" | cut -d' ' -f1)"
  mv "$1" "$BLOBS/$digest"
  echo "$digest"
}
size() { stat -c %s "$BLOBS/$1"; }

(cd "$ROOTFS" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"$WORK/entries"
reproducible_tar "$ROOTFS" --no-recursion --files-from "$WORK/entries" >"$WORK/layer.tar"
DIFF_ID="$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)"
gzip -n <"$WORK/layer.tar" >"$WORK/layer.tar.gz"
LAYER="$(blob "$WORK/layer.tar.gz")"

LABELS="$(printf '"org.opencontainers.image.source":"%s","org.opencontainers.image.version":"%s","org.opencontainers.image.revision":"%s","org.opencontainers.image.title":"alertcall","org.opencontainers.image.created":"%s"' \
  "$SOURCE_URL" "$TAG" "$REVISION" "$CREATED")"
printf '{"architecture":"amd64","os":"linux","created":"%s","config":{"User":"%s:%s","Entrypoint":["%s"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"WorkingDir":"/","Labels":{%s}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"scripts/image.sh"}]}' \
  "$CREATED" "$NONROOT_ID" "$NONROOT_ID" "$ENTRYPOINT" "$LABELS" "$DIFF_ID" "$CREATED" >"$WORK/config.json"
CONFIG="$(blob "$WORK/config.json")"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],"annotations":{%s}}' \
  "$CONFIG" "$(size "$CONFIG")" "$LAYER" "$(size "$LAYER")" "$LABELS" >"$WORK/manifest.json"
MANIFEST="$(blob "$WORK/manifest.json")"

# ref.name is the tag `skopeo`/`umoci` address (oci-archive:FILE:TAG); io.containerd.image.name is
# the full name `ctr images import` (what `kind load image-archive` runs) gives the image.
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s:%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$MANIFEST" "$(size "$MANIFEST")" "$REPOSITORY" "$TAG" "$TAG" >"$WORK/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$WORK/layout/oci-layout"
printf '[{"Config":"blobs/sha256/%s","RepoTags":["%s:%s"],"Layers":["blobs/sha256/%s"]}]' \
  "$CONFIG" "$REPOSITORY" "$TAG" "$LAYER" >"$WORK/layout/manifest.json"
find "$WORK/layout" -type f -exec chmod 0644 {} + -o -type d -exec chmod 0755 {} +

(cd "$WORK/layout" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"$WORK/archive-entries"
mkdir -p "$(dirname "$OUT")"
reproducible_tar "$WORK/layout" --no-recursion --files-from "$WORK/archive-entries" >"$WORK/archive.tar"
mv "$WORK/archive.tar" "$OUT"
rm -rf "$LAYOUT"
mv "$WORK/layout" "$LAYOUT"

printf 'image.sh: %s:%s in %s (layout %s/), rootfs %s bytes\n' "$REPOSITORY" "$TAG" "$OUT" "$LAYOUT" \
  "$(du -sb "$ROOTFS" | cut -f1)" >&2
echo "sha256:$MANIFEST"
