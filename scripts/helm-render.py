#!/usr/bin/env python3
"""Lints and renders the Helm chart with Helm's own library (PyPI's helm-python-sdk binds to it),
since the helm CLI is not needed for either.

    helm-render.py CHART VALUES_JSON   prints {"lint": report, "manifests": [objects...]} as JSON,
                                       or {"error": message} when the chart refuses to render

The tests call it with each set of values they check, and validate what it prints.
"""
import json
import sys

import helm_python as helm
import yaml

chart_dir, values = sys.argv[1], json.loads(sys.argv[2])
try:
    rendered = helm.Chart.load(chart_dir).render(values, name="codepipeline-exporter", namespace="monitoring", is_install=True)
except Exception as error:  # Helm's own failure, such as a template's `fail`
    json.dump({"error": str(error)}, sys.stdout)
    sys.exit(0)
report = helm.lint(chart_dir, values, strict=True, namespace="monitoring")
manifests = []
for path in sorted(rendered):
    if path.endswith(".yaml"):
        manifests.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
json.dump({"lint": report, "manifests": manifests}, sys.stdout)
