#!/usr/bin/env bash
# Runs hookrouter's whole test suite: unit, integration (the real binary on 127.0.0.1 with
# real TLS), config-error fixtures, signature vectors and interop with the providers' official
# SDKs. Installs what the tests call when it is missing: Debian's openssl (RSA keys, old-TLS
# probes), iproute2 (`ss`), curl, nodejs/npm, nats-server (each NATS queue test starts its
# own on a free port), testssl.sh (scans the TLS listener); the SDKs from PyPI (a venv under
# target/) and npm (tests/interop/node_modules), at the versions pinned in tests/interop/.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v ss >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v npm >/dev/null || need+=(nodejs npm)
command -v promtool >/dev/null || need+=(prometheus)
# Debian's package testssl.sh installs the command `testssl` (upstream calls it testssl.sh);
# apt brings its dependencies (bsdextrautils, dnsutils, procps).
command -v testssl >/dev/null || command -v testssl.sh >/dev/null || need+=(testssl.sh)
# Debian puts it in /usr/sbin, which is not on every user's PATH.
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The disk-failure tests make small filesystems (tmpfs, and ext4 on a loop device).
PATH="$PATH:/usr/sbin:/sbin"
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v losetup >/dev/null && command -v fstrim >/dev/null || need+=(util-linux mount)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "test.sh: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

venv=target/interop-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
(cd tests/interop && npm ci --no-audit --no-fund --silent)
export HOOKROUTER_INTEROP_PYTHON="$PWD/$venv/bin/python"

cargo test --locked "$@"
