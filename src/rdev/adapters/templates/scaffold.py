"""Copying a template's ``scaffold/`` folder into a destination, without escaping it.

Rules (docs/templates.md):

- files ending in ``.j2`` are rendered in the sandbox and written without the suffix;
- a path segment containing ``{{``/``{%`` is rendered too (``{{ service_name }}.txt``), so a
  variable value can choose a file name; a segment starting with ``dot-`` becomes ``.``
  (``dot-gitignore`` -> ``.gitignore``: package data globs skip dot files);
- ``__pycache__`` folders and ``*.pyc`` files are skipped;
- every written path must stay inside ``dest``: rendered names with ``..`` or an absolute
  path, and symlinks in the scaffold that point outside it, are refused with
  ``ValidationFailed``. The whole scaffold is checked before the first byte is written.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from rdev.adapters.templates import sandbox
from rdev.domain.errors import ValidationFailed

_SKIP_DIRS = frozenset({"__pycache__", ".git"})
_SKIP_SUFFIXES = (".pyc", ".pyo")
_DOT_PREFIX = "dot-"


@dataclass(frozen=True)
class _Entry:
    source: Path
    rel: PurePosixPath
    kind: Literal["copy", "render", "symlink"]
    link: str | None = None


def scaffold_into(
    template_name: str, scaffold_dir: Path, dest: Path, context: dict[str, Any]
) -> list[PurePosixPath]:
    """Write the scaffold into ``dest`` (created if missing); return the written paths."""
    dest.mkdir(parents=True, exist_ok=True)
    dest_real = dest.resolve()
    entries = _plan(template_name, scaffold_dir, dest_real, context)
    for entry in entries:
        _write(template_name, entry, dest_real, context)
    return [e.rel for e in entries]


def _plan(
    template_name: str, scaffold_dir: Path, dest_real: Path, context: dict[str, Any]
) -> list[_Entry]:
    root_real = scaffold_dir.resolve()
    entries: list[_Entry] = []
    for dirpath, dirnames, filenames in os.walk(root_real, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if d in _SKIP_DIRS:
                dirnames.remove(d)
            elif (here / d).is_symlink():
                dirnames.remove(d)  # never descend through a link; treat it as one
                filenames.append(d)
        for f in sorted(filenames):
            if f.endswith(_SKIP_SUFFIXES):
                continue
            source = here / f
            src_rel = source.relative_to(root_real)
            if source.is_symlink():
                link = os.readlink(source)
                _check_link_source(template_name, source, src_rel, link, root_real)
                rel = _dest_rel(template_name, src_rel, context, strip_j2=False)
                _check_inside(template_name, rel, dest_real, link=link)
                entries.append(_Entry(source, rel, "symlink", link))
                continue
            render = f.endswith(".j2")
            rel = _dest_rel(template_name, src_rel, context, strip_j2=render)
            _check_inside(template_name, rel, dest_real)
            entries.append(_Entry(source, rel, "render" if render else "copy"))
    seen: set[PurePosixPath] = set()
    for e in entries:
        if e.rel in seen:
            raise _refused(
                template_name, e.rel.as_posix(), "two scaffold files map to the same path"
            )
        seen.add(e.rel)
    return entries


def _dest_rel(
    template_name: str, src_rel: Path, context: dict[str, Any], *, strip_j2: bool
) -> PurePosixPath:
    parts: list[str] = []
    for i, part in enumerate(src_rel.parts):
        if strip_j2 and i == len(src_rel.parts) - 1:
            part = part.removesuffix(".j2")
        if "{{" in part or "{%" in part:
            part = sandbox.render(
                part, context, what=f"template {template_name!r}: file name {src_rel.as_posix()!r}"
            )
        if part.startswith(_DOT_PREFIX):
            part = "." + part.removeprefix(_DOT_PREFIX)
        parts.append(part)
    joined = "/".join(parts)
    if (
        "\\" in joined
        or "\x00" in joined
        or joined.startswith("/")
        or (len(joined) > 1 and joined[1] == ":")
    ):
        raise _refused(template_name, joined, "absolute paths are not allowed")
    rel = PurePosixPath(joined)
    if rel.is_absolute():
        raise _refused(template_name, joined, "absolute paths are not allowed")
    if any(p in ("..", ".", "") for p in joined.split("/")):
        raise _refused(template_name, joined, "'..', '.' and empty path segments are not allowed")
    if rel.parts and rel.parts[0] == ".git":
        raise _refused(template_name, joined, "a scaffold may not write into .git")
    return rel


def _check_link_source(
    template_name: str, source: Path, src_rel: Path, link: str, root_real: Path
) -> None:
    if os.path.isabs(link):
        raise _refused(template_name, src_rel.as_posix(), f"symlink to absolute path {link!r}")
    target = (source.parent / link).resolve()
    if not target.is_relative_to(root_real):
        raise _refused(
            template_name, src_rel.as_posix(), f"symlink {link!r} points outside the scaffold"
        )


def _check_inside(
    template_name: str, rel: PurePosixPath, dest_real: Path, link: str | None = None
) -> None:
    target = (dest_real / rel).resolve()
    if not target.is_relative_to(dest_real) or target == dest_real:
        raise _refused(template_name, rel.as_posix(), "resolves outside the destination")
    if link is not None:
        pointed = ((dest_real / rel).parent / link).resolve()
        if not pointed.is_relative_to(dest_real):
            raise _refused(
                template_name, rel.as_posix(), f"symlink {link!r} points outside the repository"
            )


def _write(template_name: str, entry: _Entry, dest_real: Path, context: dict[str, Any]) -> None:
    target = dest_real / entry.rel
    # Re-check at write time: an earlier entry (a symlink) may have changed what a path means.
    _check_inside(template_name, entry.rel, dest_real, link=entry.link)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.is_file():
        target.unlink()
    if entry.kind == "symlink":
        assert entry.link is not None
        os.symlink(entry.link, target)
        return
    if entry.kind == "copy":
        data = entry.source.read_bytes()
    else:
        try:
            source_text = entry.source.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise _refused(template_name, entry.rel.as_posix(), ".j2 files must be UTF-8") from None
        what = f"template {template_name!r}: {entry.source.name}"
        data = sandbox.render(source_text, context, what=what).encode("utf-8")
    # "x": O_CREAT|O_EXCL never follows a symlink planted at the target.
    with open(target, "xb") as fh:
        fh.write(data)
    shutil.copymode(entry.source, target)


def _refused(template_name: str, path: str, why: str) -> ValidationFailed:
    return ValidationFailed(
        f"template {template_name!r}: scaffold path {path!r} refused: {why}", field="template"
    )
