"""Template manifests (``template.toml``): parsing, and checking variable values against them.

A template is a folder::

    my-template/
      template.toml      name, description, version, [variables.<name>], optional prompt
      prompt.j2          optional prompt template (wins over the manifest's ``prompt`` key)
      scaffold/          optional files copied into a new repository

See docs/templates.md for the format.
"""

from __future__ import annotations

import keyword
import tomllib
from pathlib import Path
from typing import Any

from rdev.ports.templates import Template, TemplateVariable

MANIFEST = "template.toml"
PROMPT_FILE = "prompt.j2"
SCAFFOLD_DIR = "scaffold"

#: Names the render context defines itself; a variable may not shadow them.
RESERVED_NAMES = frozenset({"prompt", "variables", "project"})

_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class ManifestError(Exception):
    """A template folder's manifest is malformed (the folder is skipped and logged)."""


def type_matches(type_name: str, value: Any) -> bool:
    """JSON-schema-like type check; ``True`` is not an integer and 1 is not a boolean."""
    if type_name != "boolean" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPE_CHECKS[type_name])


def load_template(folder: Path) -> Template:
    """Read ``folder/template.toml`` (plus ``prompt.j2`` and ``scaffold/``) into a Template."""
    try:
        data = tomllib.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"{folder / MANIFEST}: {exc}") from None

    name = data.get("name", folder.name)
    description = data.get("description", "")
    version = str(data.get("version", "0"))
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ManifestError(f"{folder / MANIFEST}: invalid name {name!r}")
    if not isinstance(description, str):
        raise ManifestError(f"{folder / MANIFEST}: description must be a string")

    prompt_template = data.get("prompt")
    prompt_file = folder / PROMPT_FILE
    if prompt_file.is_file():
        prompt_template = prompt_file.read_text(encoding="utf-8")
    if prompt_template is not None and not isinstance(prompt_template, str):
        raise ManifestError(f"{folder / MANIFEST}: prompt must be a string")

    scaffold_dir = folder / SCAFFOLD_DIR
    return Template(
        name=name,
        description=description,
        version=version,
        variables=_load_variables(folder, data.get("variables", {})),
        prompt_template=prompt_template,
        scaffold_dir=scaffold_dir if scaffold_dir.is_dir() else None,
    )


def _load_variables(folder: Path, table: Any) -> list[TemplateVariable]:
    if not isinstance(table, dict):
        raise ManifestError(f"{folder / MANIFEST}: [variables] must be a table")
    out: list[TemplateVariable] = []
    for var_name, spec in table.items():
        where = f"{folder / MANIFEST}: variables.{var_name}"
        if not var_name.isidentifier() or keyword.iskeyword(var_name):
            raise ManifestError(f"{where}: name must be an identifier")
        if var_name in RESERVED_NAMES:
            raise ManifestError(f"{where}: name is reserved ({', '.join(sorted(RESERVED_NAMES))})")
        if not isinstance(spec, dict):
            raise ManifestError(f"{where}: must be a table")
        var = TemplateVariable(
            name=var_name,
            type=spec.get("type", "string"),
            required=bool(spec.get("required", False)),
            default=spec.get("default"),
            description=str(spec.get("description", "")),
        )
        if var.type not in _TYPE_CHECKS:
            raise ManifestError(f"{where}: unknown type {var.type!r}")
        if var.default is not None and not type_matches(var.type, var.default):
            raise ManifestError(f"{where}: default is not of type {var.type}")
        out.append(var)
    return out
