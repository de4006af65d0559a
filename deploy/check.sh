#!/usr/bin/env bash
# Offline checks of deploy/: the systemd units with `systemd-analyze verify`,
# the Kubernetes manifests against the Kubernetes API schemas with
# kubernetes-validate (--strict). Exits non-zero on any finding.
#
#   bash deploy/check.sh
#
# Environment:
#   GENLEDGER_BIN    genledger binary the units are verified with (systemd-analyze
#                    checks that ExecStart binaries exist); default
#                    target/debug/genledger, built with `cargo build` if missing.
#   K8S_VERSION      Kubernetes version to validate against (default 1.30.0).
#   DEPLOY_CHECK_CACHE  where kubernetes-validate is installed when it is not
#                    on PATH (default ${XDG_CACHE_HOME:-~/.cache}/genledger/deploy-check).
# The Dockerfile is not built here (that needs a Docker engine); the integration
# test `cargo test --test it deploy` checks its ENTRYPOINT and CMD.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-1.30.0}
KUBERNETES_VALIDATE_VERSION=1.37.0
CACHE=${DEPLOY_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/genledger/deploy-check}
UNITS=(deploy/systemd/genledger.service deploy/systemd/genledger-export.service deploy/systemd/genledger-export.timer)

fail() {
    echo "deploy/check.sh: $*" >&2
    exit 1
}

# Installs Debian packages quietly when apt is there and we may use it.
apt_install() {
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "installing $* with apt-get" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        return 1
    fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== systemd-analyze verify ${UNITS[*]}"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt_install systemd || fail "systemd-analyze is missing (Debian package systemd)"
fi
bin=${GENLEDGER_BIN:-target/debug/genledger}
if [ -z "${GENLEDGER_BIN:-}" ] && [ ! -x "$bin" ]; then
    cargo build --quiet --locked --bin genledger
fi
[ -x "$bin" ] || fail "genledger binary \`$bin\` is not executable (set GENLEDGER_BIN)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
mkdir "$tmp/units"
for unit in "${UNITS[@]}"; do
    grep -q '/usr/local/bin/genledger' "$unit" || [[ "$unit" == *.timer ]] \
        || fail "$unit does not run /usr/local/bin/genledger"
    sed "s#/usr/local/bin/genledger#$bin#g" "$unit" >"$tmp/units/$(basename "$unit")"
done
# verify exits 0 on many findings (unknown keys, bad values) and only prints
# them, so any line about these units fails the check too.
status=0
(cd "$tmp/units" && systemd-analyze verify --man=no --generators=no ./*) >"$tmp/verify.log" 2>&1 || status=$?
cat "$tmp/verify.log"
if [ "$status" -ne 0 ] || grep -q 'genledger' "$tmp/verify.log"; then
    fail "systemd-analyze verify found problems in deploy/systemd"
fi
echo "ok"

echo "== kubernetes-validate --strict -k $K8S_VERSION deploy/kubernetes/*.yaml"
if command -v kubernetes-validate >/dev/null 2>&1; then
    kv=(kubernetes-validate)
elif [ -x "$CACHE/venv/bin/kubernetes-validate" ]; then
    kv=("$CACHE/venv/bin/kubernetes-validate")
else
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip python3-venv \
        || fail "python3 is needed to install kubernetes-validate"
    mkdir -p "$CACHE"
    if ! python3 -m venv "$CACHE/venv" >/dev/null 2>&1; then
        rm -rf "$CACHE/venv"
        apt_install python3-venv || fail "python3 cannot create a venv (Debian package python3-venv)"
        python3 -m venv "$CACHE/venv"
    fi
    "$CACHE/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    kv=("$CACHE/venv/bin/kubernetes-validate")
fi
manifests=(deploy/kubernetes/*.yaml)
[ -e "${manifests[0]}" ] || fail "no manifests in deploy/kubernetes"
"${kv[@]}" --strict --quiet --kubernetes-version "$K8S_VERSION" "${manifests[@]}" \
    || fail "kubernetes-validate found problems in deploy/kubernetes"
echo "ok: ${#manifests[@]} files"
