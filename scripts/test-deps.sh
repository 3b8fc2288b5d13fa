#!/usr/bin/env bash
# Installs what the tests need (Debian packages) when it is missing; otherwise says what to install.
set -euo pipefail

declare -A need=(
  [/usr/bin/docker-registry]=docker-registry
  [/usr/bin/softhsm2-util]=softhsm2
  [/usr/bin/pkcs11-tool]=opensc
  [/usr/bin/promtool]=prometheus
  [/usr/bin/htpasswd]=apache2-utils
)
missing=()
for bin in "${!need[@]}"; do
  [ -x "$bin" ] || missing+=("${need[$bin]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing test dependencies: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "the tests need these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
