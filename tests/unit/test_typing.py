"""The package stays ``mypy --strict`` clean (pyproject's ``[tool.mypy]`` has strict = true).

A type error then fails the suite instead of waiting for a review: the storage ports, the
event bus and the services are only worth their types while every caller is checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_type_checks_under_mypy_strict() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "src/rdev"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # only a cold cache on a loaded machine takes long
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
