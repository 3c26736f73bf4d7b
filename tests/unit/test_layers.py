"""The arrows point inward: each layer imports only what docs/architecture.md allows.

Two kinds of rule. The layers (``domain``, ``ports``, ``services``, ``adapters``, ``api``,
``worker``, ``config.py``) list what they must never import. The outer entry points
(``cli.py``, ``client/``) list the only rdev modules they may import, since anything new
they reach for is a shortcut around the wiring. Relative imports are resolved, so
``from ..config import Settings`` counts as ``rdev.config``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "rdev"

#: The outer modules: entry points and the wiring; no layer imports them.
_OUTER = [
    "rdev.bootstrap",
    "rdev.cli",
    "rdev.client",
    "rdev.server",
    "rdev.doctor",
    "rdev.hostnames_cli",
]

#: layer (a package or a module under src/rdev) -> rdev modules it must never import
FORBIDDEN = {
    "domain": ["rdev.ports", "rdev.services", "rdev.adapters", "rdev.api", "rdev.worker"],
    "ports": ["rdev.services", "rdev.adapters", "rdev.api", "rdev.worker"],
    "services": ["rdev.adapters", "rdev.api", "rdev.worker"],
    # Adapters get plain values from bootstrap, never the Settings object (rdev.config).
    "adapters": ["rdev.services", "rdev.api", "rdev.worker"],
    "api": ["rdev.adapters", "rdev.worker"],
    "worker": ["rdev.adapters", "rdev.api", "rdev.services"],
    "config": ["rdev"],  # config.py: nothing of rdev at all
}
for _layer in ("domain", "ports", "services", "adapters", "worker"):
    FORBIDDEN[_layer] += ["rdev.config", *_OUTER]
FORBIDDEN["api"] += [m for m in _OUTER if m != "rdev.bootstrap"]  # api builds the container

#: entry point -> the only rdev modules (and their submodules) it may import
ALLOWED = {
    # The command: parses arguments and hands over to the wiring, the server, the doctor,
    # the reconcile command or the API client; it touches no adapter or service itself.
    "cli": [
        "rdev.api.app",
        "rdev.bootstrap",
        "rdev.client",
        "rdev.config",
        "rdev.doctor",
        "rdev.domain.errors",
        "rdev.hostnames_cli",
        "rdev.logging",
        "rdev.server",
    ],
    # The API client talks HTTP only: it shares the domain's pure helpers, nothing else.
    "client": ["rdev.client", "rdev.domain"],
}


def _files(layer: str) -> list[Path]:
    package = SRC / layer
    if package.is_dir():
        return sorted(package.rglob("*.py"))
    module = SRC / f"{layer}.py"
    assert module.is_file(), f"no layer {layer!r} under src/rdev"
    return [module]


def _module_of(path: Path) -> list[str]:
    """The dotted package a file's relative imports start from."""
    parts = ["rdev", *path.relative_to(SRC).with_suffix("").parts]
    return parts[:-1]  # the package the module is in (for __init__ as well)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                package = _module_of(path)
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # ``from rdev.x import y`` may import the module rdev.x.y: check both names
            out.append(base)
            out += [f"{base}.{a.name}" for a in node.names if a.name != "*"]
    return out


def _within(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _is_rdev(name: str) -> bool:
    return name == "rdev" or name.startswith("rdev.")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_inward(layer: str) -> None:
    offenders = []
    for path in _files(layer):
        for name in _imports(path):
            own = _within(name, [f"rdev.{layer}"])
            if not own and _within(name, FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []


@pytest.mark.parametrize("entry", sorted(ALLOWED))
def test_entry_points_import_only_what_they_hand_over_to(entry: str) -> None:
    offenders = []
    for path in _files(entry):
        for name in _imports(path):
            # ``from rdev import __version__`` names the package itself: that is allowed.
            if name in ("rdev", "rdev.__version__"):
                continue
            if _is_rdev(name) and not _within(name, ALLOWED[entry]):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []


def test_the_rules_see_a_forbidden_import_when_there_is_one(tmp_path: Path) -> None:
    """The checker itself: absolute, relative and from-imports are all read."""
    adapter = SRC / "adapters" / "dns" / "none.py"
    names = _imports(adapter)
    assert not any(_within(n, FORBIDDEN["adapters"]) for n in names)
    probe = tmp_path / "probe.py"
    probe.write_text("from rdev.config import Settings\nimport rdev.services.builds\n")
    assert {"rdev.config", "rdev.config.Settings", "rdev.services.builds"} <= set(_imports(probe))
