"""The repository stands alone: no tracked file names a path outside it.

Users and CI clone rdev by itself, so a test fixture, a doc link or a docstring that points
at ``../something`` above the root, or into someone's home or workspace folder, is a broken
reference for them. :func:`outside_references` is a pure function over (path, text); the
test runs it on every tracked text file.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Absolute paths into machine-specific folders (home, workspace, root's home).
ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:work|home|root|Users|mnt/data|workspace)/[\w.@+-]+")
#: Relative paths that climb: ``../x``, ``../../x`` (judged against the file's folder).
RELATIVE = re.compile(r"(?<![\w/.-])((?:\.\./)+)([\w.@+-][\w./@+-]*)")
#: Documents that exist only outside the repository (an earlier layout's shared specs).
OUTSIDE_DOCS = re.compile(
    r"\b(?:AGENT-CLIS|WOODPECKER|GITEA|WEBHOOKS|DNS|ARCHITECTURE|STYLE)\.md\b|shared/spec" "s"
)


def outside_references(path: str, text: str) -> list[str]:
    """What in ``text`` (the content of repository file ``path``) points outside the repo."""
    found = [m.group(0) for m in ABSOLUTE.finditer(text)]
    folder = posixpath.dirname(path)
    for m in RELATIVE.finditer(text):
        resolved = posixpath.normpath(posixpath.join(folder, m.group(1) + m.group(2)))
        if resolved == ".." or resolved.startswith("../"):
            found.append(m.group(0))
    for m in OUTSIDE_DOCS.finditer(text):
        # docs/architecture.md is ours; only an upper-case shared name or the shared folder
        found.append(m.group(0))
    return found


def tracked_text_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [p for p in out.split("\0") if p and (ROOT / p).is_file()]


def test_no_tracked_file_references_a_path_outside_the_repository() -> None:
    offenders: dict[str, list[str]] = {}
    for rel in tracked_text_files():
        data = (ROOT / rel).read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        hits = outside_references(rel, data.decode("utf-8", errors="replace"))
        if hits:
            offenders[rel] = sorted(set(hits))
    assert offenders == {}, "tracked files reference paths outside the repository"


#: The examples below are assembled, so this file itself names no outside path.
UP = "../"
SHARED = UP + "shared/notes.txt"
HOME = "/" + "home/me"
WORK = "/" + "work/shared"
SPECS = "shared/" + "specs"
CITE = "AGENT-CLIS" + ".md"


def test_parent_paths_that_leave_the_root_are_caught_and_ones_inside_are_not() -> None:
    assert outside_references("README.md", f"see {SHARED}") == [SHARED]
    assert outside_references("tests/unit/x.py", f"Path('{UP * 3}etc/passwd')") == [
        UP * 3 + "etc/passwd"
    ]
    # climbing out of tests/unit but staying inside the repository is fine
    assert outside_references("tests/unit/x.py", "open('../../docs/dns.md')") == []
    assert outside_references("docs/ci.md", "[specs](../tests/specs/README.md)") == []


def test_absolute_home_and_workspace_paths_are_caught_but_system_paths_are_not() -> None:
    text = f"config in {HOME}/.config/rdev, specs in {WORK}/specs/x.json"
    assert outside_references("docs/cli.md", text) == [HOME, WORK, SPECS]
    assert outside_references("scripts/x.sh", "/usr/bin/env bash; ls /etc/postgresql") == []
    assert outside_references("docs/cli.md", "~/.config/rdev/config.toml") == []
    assert outside_references("src/a.py", "GET /workers/register") == []


def test_documents_that_only_lived_outside_are_caught_but_our_docs_are_not() -> None:
    assert outside_references("src/a.py", f"# see {CITE} §1.3") == [CITE]
    assert outside_references("src/a.py", "# see docs/agent-clis.md §1.3") == []
    assert outside_references("README.md", "[map](docs/architecture.md)") == []
