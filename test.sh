#!/usr/bin/env bash
# Runs hookrouter's whole test suite: unit, integration (the real binary on 127.0.0.1 with
# real TLS) and config-error fixtures. Installs the few Debian tools the tests call when they
# are missing: openssl (RSA keys, old-TLS probes), iproute2 (`ss`), curl.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v ss >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "test.sh: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

cargo test --locked "$@"
