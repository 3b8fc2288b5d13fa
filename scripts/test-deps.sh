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

# Cloud KMS tests (issue 12): moto in server mode emulates AWS KMS (and checks SigV4 signatures
# with botocore); the Alibaba Cloud Python SDK's signing code checks ACS3 signatures in the local
# Alibaba KMS endpoint (tests/support/kms/alikms_server.py). Pinned: the tests name what moto
# 5.2.5 does differently from AWS.
pip_need=()
python3 -c 'import moto, sys; sys.exit(moto.__version__ != "5.2.5")' 2>/dev/null \
  || pip_need+=('moto[server]==5.2.5')
python3 -c 'import alibabacloud_openapi_util.client, cryptography' 2>/dev/null \
  || pip_need+=('alibabacloud-openapi-util==0.2.4' 'cryptography')
if [ ${#pip_need[@]} -gt 0 ]; then
  if [ "${CI:-}" = true ] || [ "$(id -u)" -eq 0 ]; then
    echo "installing Python test dependencies: ${pip_need[*]}" >&2
    python3 -m pip install -q --disable-pip-version-check "${pip_need[@]}" >&2
  else
    echo "the KMS tests need these PyPI packages: ${pip_need[*]}" >&2
    echo "install them with: python3 -m pip install ${pip_need[*]}" >&2
    exit 1
  fi
fi

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
