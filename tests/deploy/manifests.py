"""Reading the deploy files the tests check: YAML documents and the Kubernetes objects of a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; the test modules skip without it


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kubernetes_objects(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every object in the folder's manifests by (kind, name); the kustomization is not one."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in documents(path):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found
