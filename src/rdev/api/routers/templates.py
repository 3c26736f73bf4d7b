"""/templates: the project templates the server knows (built-in and the configured folder)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from rdev.api.deps import ContainerDep, PrincipalDep
from rdev.ports.templates import Template

router = APIRouter(prefix="/templates", tags=["templates"])


class TemplateVariableOut(BaseModel):
    name: str
    type: str
    required: bool
    default: Any = None
    description: str = ""


class TemplateOut(BaseModel):
    name: str
    description: str
    version: str
    variables: list[TemplateVariableOut]
    has_prompt_template: bool
    has_scaffold: bool
    links: dict[str, str]

    @classmethod
    def of(cls, t: Template) -> TemplateOut:
        return cls(
            name=t.name,
            description=t.description,
            version=t.version,
            variables=[
                TemplateVariableOut(
                    name=v.name,
                    type=v.type,
                    required=v.required,
                    default=v.default,
                    description=v.description,
                )
                for v in t.variables
            ],
            has_prompt_template=t.prompt_template is not None,
            has_scaffold=t.scaffold_dir is not None,
            links={"self": f"/templates/{t.name}"},
        )


class TemplateDetailOut(TemplateOut):
    prompt_template: str | None = None

    @classmethod
    def of(cls, t: Template) -> TemplateDetailOut:
        return cls(**TemplateOut.of(t).model_dump(), prompt_template=t.prompt_template)


def _provider(c: Any) -> Any:
    return c.templates


@router.get("", response_model=list[TemplateOut])
async def list_templates(c: ContainerDep, p: PrincipalDep) -> list[TemplateOut]:
    """Every template, by name: built-in ones and those of ``RDEV_TEMPLATES_DIR``."""
    p.require("projects:read", "builds:read")
    return [TemplateOut.of(t) for t in _provider(c).list()]


@router.get("/{name}", response_model=TemplateDetailOut)
async def get_template(name: str, c: ContainerDep, p: PrincipalDep) -> TemplateDetailOut:
    """One template with its variables (type, required, default) and its prompt template."""
    p.require("projects:read", "builds:read")
    return TemplateDetailOut.of(_provider(c).get(name))
