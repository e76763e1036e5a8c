#!/usr/bin/env bash
# Provisions and runs a real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager)
# on loopback for the integration tests. Everything is cached outside the repository, so only the
# first run on a machine pays for the build (about 5 minutes on 2 cores).
#
#   scripts/control-plane.sh install   install packages, build the binaries (idempotent)
#   scripts/control-plane.sh start     start etcd, apiserver, controller-manager; write a kubeconfig
#   scripts/control-plane.sh stop      stop them
#   scripts/control-plane.sh status    exit 0 when running
#   scripts/control-plane.sh env       print `export KUBECONFIG=...` for a shell
#
# Environment: ALERTCALL_CP_DIR (cache + state, default ~/.cache/alertcall/control-plane),
# ALERTCALL_CP_PORT (apiserver secure port, default 16443), ALERTCALL_ETCD_PORT (default 12379).
set -euo pipefail

K8S_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CP_DIR="${ALERTCALL_CP_DIR:-$HOME/.cache/alertcall/control-plane}"
API_PORT="${ALERTCALL_CP_PORT:-16443}"
ETCD_PORT="${ALERTCALL_ETCD_PORT:-12379}"
ETCD_PEER_PORT=$((ETCD_PORT + 1))
BIN="$CP_DIR/bin"
RUN="$CP_DIR/run"
PKI="$RUN/pki"
KUBECONFIG_PATH="$RUN/kubeconfig"

log() { printf 'control-plane: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local need=()
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v go >/dev/null || need+=(golang-go)
  command -v rsync >/dev/null || need+=(rsync)
  command -v openssl >/dev/null || need+=(openssl)
  command -v kubectl >/dev/null || need+=(kubernetes-client)
  command -v curl >/dev/null || need+=(curl)
  command -v dpkg-source >/dev/null || need+=(dpkg-dev)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
  if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

enable_deb_src() {
  local list=/etc/apt/sources.list.d/alertcall-deb-src.sources
  [ -f "$list" ] && return 0
  log "enabling deb-src entries"
  as_root tee "$list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  as_root apt-get update -qq
}

build_binaries() {
  if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ]; then
    return 0
  fi
  enable_deb_src
  local src="$CP_DIR/src"
  rm -rf "$src" && mkdir -p "$src"
  log "fetching kubernetes $K8S_VERSION source"
  (cd "$src" && apt-get source -qq --download-only "kubernetes=$K8S_VERSION" >/dev/null \
    && dpkg-source -x --skip-patches ./*.dsc tree >/dev/null)
  local tree="$src/tree"
  # NB: reflect2 v1.0.1 segfaults under Go >= 1.18 on the first custom resource; Debian's 1.0.2 works.
  log "patching vendored reflect2 to 1.0.2"
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  rsync -a --exclude '*_test.go' /usr/share/gocode/src/github.com/modern-go/reflect2/ \
    "$tree/vendor/github.com/modern-go/reflect2/"
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#' \
    "$tree/go.mod" "$tree/vendor/modules.txt"
  sed -i '/github.com\/modern-go\/reflect2 v1.0.1/d' "$tree/go.sum" 2>/dev/null || true
  log "building kube-apiserver and kube-controller-manager (a few minutes)"
  (cd "$tree" && GOFLAGS=-mod=vendor GO111MODULE=on GOTOOLCHAIN=local \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$src/build.log" 2>&1) || {
    tail -n 40 "$src/build.log" >&2
    exit 1
  }
  mkdir -p "$BIN"
  cp "$tree"/_output/local/bin/linux/*/kube-apiserver "$tree"/_output/local/bin/linux/*/kube-controller-manager "$BIN/"
  rm -rf "$src"
  log "binaries cached in $BIN"
}

make_pki() {
  [ -f "$PKI/client.ext" ] && return 0
  rm -rf "$PKI"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=alertcall-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    # NB: rustls (kube-rs) refuses X.509 v1 certificates, which `openssl x509 -req` issues
    # unless extensions are given; both leaf certificates therefore carry v3 extensions.
    cat >server.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,IP:10.0.0.1
EXT
    cat >client.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout server.key -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout admin.key -out admin.csr 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() {
  local ca admin_crt admin_key
  ca=$(base64 -w0 <"$PKI/ca.crt")
  admin_crt=$(base64 -w0 <"$PKI/admin.crt")
  admin_key=$(base64 -w0 <"$PKI/admin.key")
  # NB: written aside and renamed: test binaries (and kubectl) read it while another `start`
  # rewrites it, and a half-written file reads as "no cluster" (kubectl falls back to :8080).
  cat >"$KUBECONFIG_PATH.tmp.$$" <<KC
apiVersion: v1
kind: Config
clusters:
- name: alertcall-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $ca
users:
- name: admin
  user:
    client-certificate-data: $admin_crt
    client-key-data: $admin_key
contexts:
- name: alertcall-test
  context: {cluster: alertcall-test, user: admin}
current-context: alertcall-test
KC
  mv -f "$KUBECONFIG_PATH.tmp.$$" "$KUBECONFIG_PATH"
}

# A pid file outlives its process (a stopped session, a reboot) and the pid may be reused, so the
# process must also be the binary the file is named after.
pid_alive() {
  [ -f "$1" ] || return 1
  local pid name
  pid=$(cat "$1")
  name=$(basename "$1" .pid)
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

wait_ready() {
  local i
  for i in $(seq 1 120); do
    if curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
      "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  log "kube-apiserver did not become ready; last log lines:"
  tail -n 30 "$RUN/kube-apiserver.log" >&2
  return 1
}

start() {
  install_packages
  build_binaries
  mkdir -p "$RUN"
  make_pki
  if pid_alive "$RUN/kube-apiserver.pid"; then
    write_kubeconfig
    wait_ready
    log "already running"
    echo "$KUBECONFIG_PATH"
    return 0
  fi
  stop_quiet
  rm -rf "$RUN/etcd-data"
  log "starting etcd on 127.0.0.1:$ETCD_PORT"
  setsid etcd --name alertcall-test --data-dir "$RUN/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "alertcall-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync >"$RUN/etcd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/etcd.pid"
  log "starting kube-apiserver on 127.0.0.1:$API_PORT"
  setsid "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/server.crt" --tls-private-key-file "$PKI/server.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc" \
    --authorization-mode RBAC --service-cluster-ip-range 10.0.0.0/24 \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount,DefaultStorageClass,ResourceQuota \
    --disable-admission-plugins StorageObjectInUseProtection \
    --allow-privileged=true --event-ttl 1h >"$RUN/kube-apiserver.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/kube-apiserver.pid"
  write_kubeconfig
  wait_ready
  log "starting kube-controller-manager"
  setsid "$BIN/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_PATH" --bind-address 127.0.0.1 --secure-port 0 --port 0 \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=false --leader-elect=false \
    --controllers '*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-pvc-protection,-pv-protection,-service,-route,-cloud-node-lifecycle,-ttl' \
    >"$RUN/kube-controller-manager.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/kube-controller-manager.pid"
  log "ready; KUBECONFIG=$KUBECONFIG_PATH"
  echo "$KUBECONFIG_PATH"
}

stop_quiet() {
  local name
  for name in kube-controller-manager kube-apiserver etcd; do
    if pid_alive "$RUN/$name.pid"; then
      kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do pid_alive "$RUN/$name.pid" || break; sleep 0.1; done
      pid_alive "$RUN/$name.pid" && kill -9 "$(cat "$RUN/$name.pid")" 2>/dev/null || true
    fi
    rm -f "$RUN/$name.pid"
  done
}

# Test binaries may call `start` concurrently; one of them provisions, the others wait.
with_lock() {
  mkdir -p "$CP_DIR"
  exec 9>"$CP_DIR/.lock"
  flock 9
  "$@"
}

case "${1:-}" in
  install) with_lock install_packages; with_lock build_binaries ;;
  start) with_lock start ;;
  stop) with_lock stop_quiet; log "stopped" ;;
  status) pid_alive "$RUN/kube-apiserver.pid" ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
