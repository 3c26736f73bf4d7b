"""The arrows point inward: each layer imports only what docs/architecture.md allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "rdev"

#: layer -> rdev packages it must never import
FORBIDDEN = {
    "domain": [
        "rdev.ports",
        "rdev.services",
        "rdev.adapters",
        "rdev.api",
        "rdev.worker",
        "rdev.bootstrap",
        "rdev.cli",
        "rdev.server",
    ],
    "ports": ["rdev.services", "rdev.adapters", "rdev.api", "rdev.worker", "rdev.bootstrap"],
    "services": ["rdev.adapters", "rdev.api", "rdev.worker", "rdev.bootstrap", "rdev.cli"],
    "api": ["rdev.adapters", "rdev.worker", "rdev.cli"],
    "worker": ["rdev.adapters", "rdev.api", "rdev.services", "rdev.bootstrap", "rdev.cli"],
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_inward(layer):
    offenders = []
    for path in sorted((SRC / layer).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []
