"""The TemplateProvider port: project templates (manifest, prompt template, scaffold)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class TemplateVariable:
    name: str
    type: str = "string"  # string | integer | number | boolean | array | object
    required: bool = False
    default: Any = None
    description: str = ""


@dataclass
class Template:
    name: str
    description: str
    version: str
    variables: list[TemplateVariable] = field(default_factory=list)
    prompt_template: str | None = None
    scaffold_dir: Path | None = None


@dataclass
class RenderedPrompt:
    prompt: str
    template: str
    version: str


class TemplateProvider(Protocol):
    def list(self) -> list[Template]: ...

    def get(self, name: str) -> Template:
        """Raise rdev.domain.errors.NotFound when unknown."""
        ...

    def render_prompt(
        self, name: str, prompt: str, variables: dict[str, Any], project: dict[str, Any]
    ) -> RenderedPrompt:
        """Validate variables and render; ValidationFailed naming the variable on bad input."""
        ...

    def scaffold(
        self, name: str, dest: Path, variables: dict[str, Any], project: dict[str, Any]
    ) -> None:
        """Write the template's scaffold files into ``dest`` (paths cannot escape it)."""
        ...
