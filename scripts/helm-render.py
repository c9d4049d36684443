#!/usr/bin/env python3
"""Lints and renders the Helm chart with Helm's own library (PyPI's helm-python-sdk binds to it),
since the helm CLI is not needed for either.

    helm-render.py CHART VALUES_JSON   prints {"lint": report, "manifests": [objects...]} as JSON

The tests call it with each set of values they check, and validate what it prints.
"""
import json
import sys

import helm_python as helm
import yaml

chart_dir, values = sys.argv[1], json.loads(sys.argv[2])
report = helm.lint(chart_dir, values, strict=True, namespace="monitoring")
rendered = helm.Chart.load(chart_dir).render(values, name="codepipeline-exporter", namespace="monitoring", is_install=True)
manifests = []
for path in sorted(rendered):
    if path.endswith(".yaml"):
        manifests.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
json.dump({"lint": report, "manifests": manifests}, sys.stdout)
