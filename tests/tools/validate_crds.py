#!/usr/bin/env python3
"""Validates Prometheus Operator custom resources against the operator's own CRD schemas, as the
API server does with kubectl's default strict field validation: every field the schema does not
declare is an error, unless the schema preserves unknown fields there.

    validate_crds.py SCHEMA_DIR MANIFESTS_JSON   prints one line per error; exits 1 if any

SCHEMA_DIR holds the openAPIV3Schema of each CRD (tests/schemas/*.json.gz, taken from the
operator's example/prometheus-operator-crd of the release each file names).
"""
import gzip
import json
import pathlib
import sys

import jsonschema


def strict(schema):
    """The schema with unknown fields forbidden wherever Kubernetes would reject them."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


schemas = {}
for path in pathlib.Path(sys.argv[1]).glob("*.json.gz"):
    crd = json.loads(gzip.decompress(path.read_bytes()))
    for version, schema in crd["versions"].items():
        schemas[(f"{crd['group']}/{version}", crd["kind"])] = strict(schema)

errors = []
for manifest in json.loads(pathlib.Path(sys.argv[2]).read_text()):
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    name = f"{key[1]} {manifest.get('metadata', {}).get('name')}"
    schema = schemas.get(key)
    if schema is None:
        errors.append(f"{name}: no schema of {key[0]} {key[1]}")
        continue
    # The API server checks metadata as an ObjectMeta, not through the CRD's schema.
    body = {k: v for k, v in manifest.items() if k != "metadata"}
    schema = dict(schema, properties={k: v for k, v in schema["properties"].items() if k != "metadata"})
    for error in jsonschema.Draft7Validator(schema).iter_errors(body):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{name}: {path}: {error.message[:300]}")
print("\n".join(errors))
sys.exit(1 if errors else 0)
