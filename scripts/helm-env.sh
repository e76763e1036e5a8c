#!/usr/bin/env bash
# Provisions real Helm for the chart tests: the Helm v4 engine packaged for Python
# (`helm-python-sdk` on PyPI) in a virtualenv cached outside the repository. Prints the
# interpreter to run scripts/helm.py with.
set -euo pipefail
HELM_SDK_VERSION="0.2.2"
VENV="${ALERTCALL_VENV:-$HOME/.cache/alertcall/venv}"
mkdir -p "$(dirname "$VENV")"
exec 9>"$(dirname "$VENV")/.venv.lock"
flock 9
if ! "$VENV/bin/python" -c "import helm_python" >/dev/null 2>&1; then
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq python3-venv >/dev/null; else sudo apt-get install -y -qq python3-venv >/dev/null; fi
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "helm-python-sdk==$HELM_SDK_VERSION" >&2
fi
echo "$VENV/bin/python"
