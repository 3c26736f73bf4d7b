"""FolderTemplateProvider: the TemplateProvider port over template folders on disk.

Each directory in ``dirs`` holds one sub-folder per template (see manifest.py). Later
directories override earlier ones by template name, so the wiring passes
``[builtin_templates_dir(), settings.templates_dir]`` and an operator's folder wins.
Folders are re-read on every call: adding or editing a template needs no restart, and a
broken manifest is logged and skipped rather than hiding the others.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import rdev
from rdev.adapters.templates import sandbox
from rdev.adapters.templates.manifest import MANIFEST, ManifestError, load_template, type_matches
from rdev.adapters.templates.scaffold import scaffold_into
from rdev.domain.errors import NotFound, ValidationFailed
from rdev.ports.templates import RenderedPrompt, Template

log = logging.getLogger(__name__)


def builtin_templates_dir() -> Path:
    """The templates shipped inside the package (blank, python-service, static-site)."""
    return Path(rdev.__file__).parent / "templates"


class FolderTemplateProvider:
    """Templates from folders; implements rdev.ports.templates.TemplateProvider."""

    def __init__(self, dirs: list[Path]) -> None:
        self._dirs = [Path(d) for d in dirs]

    # -- discovery -------------------------------------------------------------------------

    def _scan(self) -> dict[str, Template]:
        found: dict[str, Template] = {}
        for root in self._dirs:
            if not root.is_dir():
                continue
            for folder in sorted(root.iterdir()):
                if not (folder / MANIFEST).is_file():
                    continue
                try:
                    template = load_template(folder)
                except ManifestError as exc:
                    log.warning("skipping template folder: %s", exc)
                    continue
                found[template.name] = template  # later dirs override earlier ones
        return found

    def list(self) -> list[Template]:
        return sorted(self._scan().values(), key=lambda t: t.name)

    def get(self, name: str) -> Template:
        template = self._scan().get(name)
        if template is None:
            raise NotFound(f"template {name!r} not found", field="template")
        return template

    # -- use -------------------------------------------------------------------------------

    def resolve_variables(self, template: Template, variables: dict[str, Any]) -> dict[str, Any]:
        """Check ``variables`` against the manifest and fill in defaults.

        Raises ValidationFailed naming the variable (``field="variables.<name>"``) for an
        unknown variable, a missing required one, or a value of the wrong type.
        """
        declared = {v.name: v for v in template.variables}
        for given in variables:
            if given not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise ValidationFailed(
                    f"unknown variable {given!r} for template {template.name!r} "
                    f"(declared: {known})",
                    field=f"variables.{given}",
                )
        resolved: dict[str, Any] = {}
        for var in template.variables:
            if var.name in variables and variables[var.name] is not None:
                value = variables[var.name]
                if not type_matches(var.type, value):
                    raise ValidationFailed(
                        f"variable {var.name!r} must be of type {var.type}, "
                        f"got {type(value).__name__}",
                        field=f"variables.{var.name}",
                    )
                resolved[var.name] = value
            elif var.required:
                raise ValidationFailed(
                    f"variable {var.name!r} is required by template {template.name!r}",
                    field=f"variables.{var.name}",
                )
            else:
                resolved[var.name] = var.default
        return resolved

    def render_prompt(
        self, name: str, prompt: str, variables: dict[str, Any], project: dict[str, Any]
    ) -> RenderedPrompt:
        template = self.get(name)
        resolved = self.resolve_variables(template, variables)
        if template.prompt_template is None:
            return RenderedPrompt(prompt=prompt, template=template.name, version=template.version)
        text = sandbox.render(
            template.prompt_template,
            _context(resolved, project, prompt=prompt),
            what=f"template {template.name!r} prompt",
            field="template",
        )
        return RenderedPrompt(prompt=text, template=template.name, version=template.version)

    def scaffold(
        self, name: str, dest: Path, variables: dict[str, Any], project: dict[str, Any]
    ) -> None:
        template = self.get(name)
        resolved = self.resolve_variables(template, variables)
        if template.scaffold_dir is None:
            Path(dest).mkdir(parents=True, exist_ok=True)
            return
        scaffold_into(template.name, template.scaffold_dir, Path(dest), _context(resolved, project))


def _project_context(project: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": project.get("name", ""),
        "repo_url": project.get("repo_url", ""),
        "default_branch": project.get("default_branch", "main"),
    }


def _context(
    variables: dict[str, Any], project: dict[str, Any], prompt: str | None = None
) -> dict[str, Any]:
    # Variable names are identifiers that never shadow prompt/variables/project (manifest.py).
    ctx: dict[str, Any] = dict(variables)
    ctx["variables"] = dict(variables)
    ctx["project"] = _project_context(project)
    if prompt is not None:
        ctx["prompt"] = prompt
    return ctx
