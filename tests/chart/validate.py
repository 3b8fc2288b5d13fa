#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests the way an API server with strict field validation would.

usage: validate.py --kube-version 1.33.0 [--kube-version 1.37.0 ...] --crds crds/signet.dev.yaml FILE...

- Built-in kinds (and the CRDs themselves): Kubernetes' own OpenAPI schemas for that version, through
  the PyPI package kubernetes-validate, strict (unknown fields refused).
- signet.dev kinds: the openAPIV3Schema of the matching CRD version in --crds, made strict the way the
  API server is (unknown fields refused unless x-kubernetes-preserve-unknown-fields), `nullable` and
  `x-kubernetes-int-or-string` understood. CEL rules (x-kubernetes-validations) are not evaluated here.
- Kinds of other projects (cert-manager.io, monitoring.coreos.com): no schema here; listed as unchecked.
  Any other kind without a schema is an error.

Identical objects (the CRDs of every rendering, what Helm 3 and Helm 4 both render) are validated once.
Prints one line per distinct object and version ("ok", "unchecked" or "error"); exits 1 when any object failed, 3 when the
Python packages are missing.
"""

import argparse
import copy
import functools
import json
import sys

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as err:
    print(f"missing Python package ({err}): install the PyPI package kubernetes-validate "
          "(scripts/test-deps.sh does)", file=sys.stderr)
    sys.exit(3)

# kubernetes-validate reads and parses its schema files again for every object: read each once.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents)
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# API groups whose kinds have no schema in this repository or in kubernetes-validate.
FOREIGN_GROUPS = ("cert-manager.io", "monitoring.coreos.com")


def strict(schema):
    """The schema as the API server applies it: unknown fields refused, OpenAPI extensions mapped."""
    schema = copy.copy(schema)
    if schema.get("x-kubernetes-int-or-string"):
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if "properties" in schema:
        schema["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = strict(schema[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            schema[key] = [strict(s) for s in schema[key]]
    return schema


def crd_schemas(path):
    """(apiVersion, kind) -> strict schema, for every served version of every CRD in the file."""
    schemas = {}
    with open(path) as f:
        for crd in yaml.load_all(f, Loader=Loader):
            if not crd:
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                # The API server adds these to every custom resource's schema.
                schema.setdefault("properties", {}).update({
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                })
                schemas[(api_version, spec["names"]["kind"])] = strict(schema)
    return schemas


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kube-version", action="append", required=True)
    parser.add_argument("--crds", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    custom = crd_schemas(args.crds)
    distinct = {}
    for filename in args.files:
        with open(filename) as f:
            for doc in yaml.load_all(f, Loader=Loader):
                if doc:
                    distinct.setdefault(json.dumps(doc, sort_keys=True, default=str), (filename, doc))
    failed = False
    for kube_version in args.kube_version:
        for filename, doc in distinct.values():
            failed |= not check(doc, filename, kube_version, custom, args.crds)
    sys.exit(1 if failed else 0)


def check(doc, filename, kube_version, custom, crds):
    """Validates one object, printing its line; False when it failed."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    name = f"{kind}/{doc.get('metadata', {}).get('name', '?')}"
    where = f"{filename}: {name} ({api_version}, Kubernetes {kube_version})"
    group = api_version.split("/")[0] if "/" in api_version else ""
    try:
        if group == "signet.dev":
            schema = custom.get((api_version, kind))
            if schema is None:
                raise ValueError(f"no CRD in {crds} defines {kind} in {api_version}")
            jsonschema.validate(doc, schema)
        elif group in FOREIGN_GROUPS:
            print(f"unchecked {where}: no schema for this project's kinds here")
            return True
        else:
            kubernetes_validate.validate(doc, kube_version, strict=True)
    except jsonschema.ValidationError as err:
        path = "/".join(str(p) for p in err.absolute_path) or "(root)"
        print(f"error {where}: at {path}: {err.message}")
        return False
    except (kubernetes_validate.SchemaNotFoundError, ValueError) as err:
        print(f"error {where}: {err}")
        return False
    print(f"ok {where}")
    return True


if __name__ == "__main__":
    main()
