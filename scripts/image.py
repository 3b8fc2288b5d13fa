#!/usr/bin/env python3
"""Builds signet's container image without docker, podman or buildah, and pushes it.

    image.py rootfs --binary target/release/signet --out DIR
    image.py build  --binary target/release/signet --layout DIR --name ghcr.io/signet-dev/signet:0.1.0
    image.py push   --layout DIR --to HOST/REPO:TAG [--insecure]
    image.py tiny   --layout DIR --text TEXT       (a one-file image, for `make demo`)

`rootfs` assembles the image's whole filesystem from this (Debian) machine: the binary as
/usr/local/bin/signet, every shared library `ldd` says it and the SoftHSM2 PKCS#11 module need (with the
merged-/usr symlinks they are reached through), the module at /usr/lib/softhsm/libsofthsm2.so (the path
the chart's `signer.pkcs11.module` names), a SoftHSM2 configuration whose token folder
/var/lib/softhsm/tokens is a mount point, Debian's CA bundle, the user `nonroot` (65532), /tmp, and the
copyright files of the Debian packages the files come from. Nothing in it is setuid; everything but /tmp,
the token folder and the home folder belongs to root, so the root filesystem can be mounted read-only.
The Containerfile runs the same command in a Debian stage and copies the result onto `scratch`.

`build` writes that filesystem as one reproducible gzip layer (sorted, fixed owners and times:
SOURCE_DATE_EPOCH, else the last commit's time) into an OCI image layout (oci-layout, index.json, blobs/),
the image config running `signet` as 65532:65532.

`push` uploads the layout's blobs and manifest with the OCI distribution API (monolithic uploads).
Credentials: REGISTRY_USERNAME / REGISTRY_PASSWORD (Basic, or exchanged for a Bearer token when the
registry asks for one); plain HTTP for loopback hosts or with --insecure.
"""

import argparse
import base64
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request

NONROOT = 65532
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Folders owned by the non-root user (mount points or scratch space); everything else is root's.
USER_DIRS = {"tmp": 0o1777, "var/lib/softhsm/tokens": 0o700, "home/nonroot": 0o700}
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


class Rootfs:
    """A root filesystem under construction at `root`, mirroring host paths."""

    def __init__(self, root):
        self.root = root
        self.files = set()

    def add(self, path):
        """Copies the host file `path`, recreating every symlink on the way as a symlink."""
        parts = path.strip("/").split("/")
        current = ""
        for index, part in enumerate(parts):
            current += "/" + part
            inside = self.root + current
            if os.path.islink(current):
                target = os.readlink(current)
                if not os.path.lexists(inside):
                    os.makedirs(os.path.dirname(inside), exist_ok=True)
                    os.symlink(target, inside)
                resolved = os.path.normpath(os.path.join(os.path.dirname(current), target))
                rest = "/".join(parts[index + 1:])
                return self.add(resolved + ("/" + rest if rest else ""))
            if index < len(parts) - 1:
                os.makedirs(inside, exist_ok=True)
        if not os.path.isfile(current):
            fail(f"{current} is not a file")
        shutil.copyfile(current, self.root + current)
        executable = os.stat(current).st_mode & 0o111
        os.chmod(self.root + current, 0o755 if executable else 0o644)
        self.files.add(current)
        return current

    def add_with_libraries(self, path):
        self.add(path)
        for library in shared_libraries(path):
            self.add(library)

    def write(self, path, text, mode=0o644):
        inside = self.root + path
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        with open(inside, "w") as f:
            f.write(text)
        os.chmod(inside, mode)


def shared_libraries(path):
    """The absolute paths `ldd` resolves for `path` (the dynamic loader included)."""
    try:
        out = subprocess.run(["ldd", path], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        fail("ldd not found (Debian package libc-bin)")
    except subprocess.CalledProcessError as err:
        if "not a dynamic executable" in err.stdout + err.stderr:
            return []
        fail(f"ldd {path}: {err.stderr.strip()}")
    libraries = []
    for line in out.splitlines():
        if "not found" in line:
            fail(f"ldd {path}: {line.strip()}")
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            libraries.append(match.group(1))
    return libraries


def debian_packages(files):
    """The Debian packages that own these files (merged-/usr aware), sorted."""
    packages = set()
    for path in sorted(files):
        for candidate in {path, re.sub(r"^/usr/lib/", "/lib/", path)}:
            out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if out.returncode == 0:
                packages.add(out.stdout.split(":")[0].strip())
                break
    return sorted(packages)


def make_rootfs(binary, out):
    if not os.path.isfile(binary):
        fail(f"{binary}: no such binary (build it: cargo build --release)")
    if os.path.lexists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    fs = Rootfs(out)
    for directory, mode in USER_DIRS.items():
        os.makedirs(os.path.join(out, directory), exist_ok=True)
        os.chmod(os.path.join(out, directory), mode)
        if os.geteuid() == 0:  # the Containerfile copies this folder with its owners
            os.chown(os.path.join(out, directory), NONROOT, NONROOT)
    fs.write("/usr/local/bin/signet", "", 0o755)
    shutil.copyfile(binary, out + "/usr/local/bin/signet")
    for library in shared_libraries(binary):
        fs.add(library)
    if not os.path.exists(SOFTHSM_MODULE):
        fail(f"{SOFTHSM_MODULE} not found: install the Debian package softhsm2")
    fs.add_with_libraries(SOFTHSM_MODULE)
    fs.write("/etc/softhsm/softhsm2.conf", "# Tokens live on a volume mounted here (read-only root).\n"
             "directories.tokendir = /var/lib/softhsm/tokens/\nobjectstore.backend = file\n"
             "log.level = ERROR\nslots.removable = false\n")
    if not os.path.isfile(CA_BUNDLE):
        fail(f"{CA_BUNDLE} not found: install the Debian package ca-certificates")
    fs.add(CA_BUNDLE)
    fs.files.add("/usr/share/ca-certificates")  # its package, for the copyright file below
    fs.write("/etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\n"
             f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n")
    fs.write("/etc/group", f"root:x:0:\nnonroot:x:{NONROOT}:\n")
    fs.write("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
    for package in debian_packages(fs.files):
        copyright_file = f"/usr/share/doc/{package.split(':')[0]}/copyright"
        if os.path.isfile(copyright_file):
            fs.add(copyright_file)
    return fs


def source_date_epoch():
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(["git", "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else 0


def layer_tar(root, mtime):
    """The root filesystem as an uncompressed tar: sorted, root-owned but for USER_DIRS, fixed times."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, root)
                info = tar.gettarinfo(path, arcname=relative)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = mtime
                if relative in USER_DIRS:
                    info.uid = info.gid = NONROOT
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buffer.getvalue()


def write_blob(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest.split(":")[1])
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": digest, "size": len(data)}


def build(binary, layout, name, gzip_level):
    with tempfile.TemporaryDirectory() as scratch:
        root = os.path.join(scratch, "rootfs")
        make_rootfs(binary, root)
        mtime = source_date_epoch()
        tar = layer_tar(root, mtime)
    write_layout(layout, name, tar, mtime, gzip_level, {
        "User": f"{NONROOT}:{NONROOT}",
        "Entrypoint": ["/usr/local/bin/signet"],
        "Cmd": ["--help"],
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/nonroot",
                "SOFTHSM2_CONF=/etc/softhsm/softhsm2.conf"],
        "WorkingDir": "/",
    })


def tiny(layout, text):
    """A one-layer image holding /hello.txt with `text`: something to push, sign and admit."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    write_layout(layout, "demo:latest", buffer.getvalue(), 0, 6, {"Cmd": ["/hello.txt"]})


def write_layout(layout, name, tar, mtime, gzip_level, image_config):
    """An OCI image layout of one image: the layer `tar`, gzip-compressed, and `image_config`."""
    version = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    compressed = gzip.compress(tar, compresslevel=gzip_level, mtime=0)
    if os.path.lexists(layout):
        shutil.rmtree(layout)
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    layer = {"mediaType": LAYER_TYPE, **write_blob(layout, compressed)}
    created = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    image_config["Labels"] = {
        "org.opencontainers.image.title": name.rsplit("/", 1)[-1].split(":")[0],
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
    }
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created": created, "created_by": "scripts/image.py"}],
    }
    config_descriptor = {"mediaType": CONFIG_TYPE, **write_blob(layout, canonical(config))}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_descriptor,
                "layers": [layer], "annotations": {"org.opencontainers.image.created": created}}
    manifest_descriptor = {"mediaType": MANIFEST_TYPE, **write_blob(layout, canonical(manifest))}
    manifest_descriptor["annotations"] = {"org.opencontainers.image.ref.name": version,
                                          "io.containerd.image.name": name}
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [manifest_descriptor]}, f, indent=2)
    print(f"{name}@{manifest_descriptor['digest']} written to {layout} "
          f"(layer {len(compressed) / 1e6:.1f} MB compressed, {len(tar) / 1e6:.1f} MB)")


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Registry:
    """A minimal OCI distribution client: blob and manifest uploads, Basic or Bearer authentication."""

    def __init__(self, host, repository, insecure):
        loopback = re.match(r"^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?$", host)
        self.base = f"{'http' if insecure or loopback else 'https'}://{host}"
        self.repository = repository
        self.user = os.environ.get("REGISTRY_USERNAME")
        self.password = os.environ.get("REGISTRY_PASSWORD", "")
        self.authorization = None

    def request(self, method, url, data=None, headers=None, retry=True):
        url = urllib.parse.urljoin(self.base, url)
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if self.authorization:
            request.add_header("Authorization", self.authorization)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            if err.code == 401 and retry and self.authenticate(err.headers.get("WWW-Authenticate", "")):
                return self.request(method, url, data, headers, retry=False)
            return err.code, dict(err.headers), err.read()
        except urllib.error.URLError as err:
            fail(f"{method} {url}: {err.reason}")

    def authenticate(self, challenge):
        basic = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if challenge.lower().startswith("basic") and self.user:
            self.authorization = basic
            return True
        if not challenge.lower().startswith("bearer"):
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {"service": params.get("service", ""),
                 "scope": f"repository:{self.repository}:pull,push"}
        request = urllib.request.Request(params["realm"] + "?" + urllib.parse.urlencode(query))
        if self.user:
            request.add_header("Authorization", basic)
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        self.authorization = "Bearer " + (answer.get("token") or answer.get("access_token", ""))
        return True

    def upload_blob(self, layout, descriptor):
        digest = descriptor["digest"]
        status, _, _ = self.request("HEAD", f"/v2/{self.repository}/blobs/{digest}")
        if status == 200:
            return
        status, headers, body = self.request("POST", f"/v2/{self.repository}/blobs/uploads/", b"")
        if status != 202:
            fail(f"starting the upload of {digest}: HTTP {status} {body[:200]!r}")
        location = headers.get("Location") or headers.get("location")
        separator = "&" if "?" in location else "?"
        with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
            data = f.read()
        status, _, body = self.request("PUT", f"{location}{separator}digest={digest}", data,
                                       {"Content-Type": "application/octet-stream"})
        if status != 201:
            fail(f"uploading {digest}: HTTP {status} {body[:200]!r}")


def push(layout, to, insecure):
    match = re.match(r"^([^/]+)/(.+):([^:/]+)$", to)
    if not match:
        fail(f"{to}: write HOST/REPOSITORY:TAG")
    host, repository, tag = match.groups()
    if not os.path.isfile(os.path.join(layout, "index.json")):
        fail(f"{layout} holds no OCI image layout (index.json): build it first (make image)")
    with open(os.path.join(layout, "index.json")) as f:
        descriptor = json.load(f)["manifests"][0]
    with open(os.path.join(layout, "blobs", "sha256", descriptor["digest"].split(":")[1]), "rb") as f:
        manifest_bytes = f.read()
    manifest = json.loads(manifest_bytes)
    registry = Registry(host, repository, insecure)
    for blob in [manifest["config"], *manifest["layers"]]:
        registry.upload_blob(layout, blob)
    status, _, body = registry.request("PUT", f"/v2/{repository}/manifests/{tag}", manifest_bytes,
                                       {"Content-Type": MANIFEST_TYPE})
    if status != 201:
        fail(f"pushing the manifest: HTTP {status} {body[:200]!r}")
    print(f"{to}@{descriptor['digest']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rootfs = commands.add_parser("rootfs", help="assemble the image's filesystem in a folder")
    rootfs.add_argument("--binary", required=True)
    rootfs.add_argument("--out", required=True)
    build_cmd = commands.add_parser("build", help="write an OCI image layout")
    build_cmd.add_argument("--binary", required=True)
    build_cmd.add_argument("--layout", required=True)
    build_cmd.add_argument("--name", required=True, help="HOST/REPOSITORY:TAG the image is named")
    build_cmd.add_argument("--gzip-level", type=int, default=6)
    push_cmd = commands.add_parser("push", help="push an OCI image layout to a registry")
    push_cmd.add_argument("--layout", required=True)
    push_cmd.add_argument("--to", required=True, help="HOST/REPOSITORY:TAG")
    push_cmd.add_argument("--insecure", action="store_true", help="plain HTTP")
    tiny_cmd = commands.add_parser("tiny", help="write a one-file image layout")
    tiny_cmd.add_argument("--layout", required=True)
    tiny_cmd.add_argument("--text", required=True)
    args = parser.parse_args()
    if args.command == "tiny":
        tiny(args.layout, args.text)
    elif args.command == "rootfs":
        fs = make_rootfs(args.binary, args.out)
        print(f"{args.out}: {len(fs.files)} files")
    elif args.command == "build":
        build(args.binary, args.layout, args.name, args.gzip_level)
    else:
        push(args.layout, args.to, args.insecure)


if __name__ == "__main__":
    main()
