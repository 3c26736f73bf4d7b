"""Request and response bodies of the HTTP API (the wire shapes, separate from the domain)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from rdev.domain.models import BuildResult, BuildSpec, BuildStatus, Project
from rdev.services.ci_settings import public_ci_settings
from rdev.services.create_and_build import GITEA_OPTIONS, ProjectAndBuild, ProjectToCreate
from rdev.services.projects import ProjectRegistration


def _secret(value: str | None) -> SecretStr | None:
    """A write-only field of a request, wrapped as it came (an empty string too)."""
    return SecretStr(value) if value is not None else None


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63, examples=["my-service"])
    repo_url: str = Field(min_length=1, examples=["https://git.example.org/team/my-service.git"])
    default_branch: str = Field(default="main", min_length=1, max_length=255)
    git_credential: str | None = Field(
        default=None, description="Token or user:password for the repo; write-only."
    )
    default_agent: str | None = None
    labels: list[str] = Field(default_factory=list)

    def to_registration(self) -> ProjectRegistration:
        return ProjectRegistration(
            name=self.name,
            repo_url=self.repo_url,
            default_branch=self.default_branch,
            git_credential=_secret(self.git_credential),
            default_agent=self.default_agent,
            labels=tuple(self.labels),
        )


class NewProject(BaseModel):
    """The project half of a create-and-build request."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63, examples=["my-service"])
    template: str = Field(default="blank", description="Template whose scaffold seeds the repo.")
    variables: dict[str, Any] = Field(
        default_factory=dict, description="Template variables for the scaffold."
    )
    host: Literal["local", "gitea", "none"] | None = Field(
        default=None,
        description="Where the repository is made; default: the server's RDEV_REPO_HOST. "
        "'none' registers an existing repository (repo_url) without scaffolding it.",
    )
    repo_url: str | None = Field(default=None, description="Only with host 'none'.")
    git_credential: str | None = Field(
        default=None, description="Only with host 'none': token or user:password; write-only."
    )
    default_branch: str = Field(default="main", min_length=1, max_length=255)
    default_agent: str | None = None
    labels: list[str] = Field(default_factory=list)
    owner: str | None = Field(default=None, description="Gitea: organisation or user.")
    private: bool | None = Field(default=None, description="Gitea: private repository.")
    description: str | None = Field(default=None, description="Gitea: repository description.")
    template_repo: str | None = Field(
        default=None, description="Gitea: 'owner/name' of a template repository to generate from."
    )


class CreateAndBuildRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "project": {
                        "name": "clock-service",
                        "template": "python-service",
                        "variables": {"service_name": "clock", "port": 8000},
                        "host": "local",
                    },
                    "build": {
                        "prompt": "Add GET /time returning the current UTC time as JSON.",
                        "auto_commit": True,
                        "auto_push": True,
                        "callback_url": "https://bot.example.org/rdev-callback",
                    },
                }
            ]
        },
    )

    project: NewProject
    build: BuildSpec

    def to_domain(self) -> ProjectAndBuild:
        """The service's input. An Idempotency-Key's fingerprint is the hash of this body's
        JSON (so a retry must send the same body)."""
        p = self.project
        return ProjectAndBuild(
            project=ProjectToCreate(
                name=p.name,
                template=p.template,
                variables=dict(p.variables),
                host=p.host,
                repo_url=p.repo_url,
                git_credential=_secret(p.git_credential),
                default_branch=p.default_branch,
                default_agent=p.default_agent,
                labels=tuple(p.labels),
                gitea_options={
                    k: getattr(p, k) for k in GITEA_OPTIONS if getattr(p, k) is not None
                },
            ),
            build=self.build,
            fingerprint=hashlib.sha256(self.model_dump_json().encode()).hexdigest(),
        )


class CISettingsOut(BaseModel):
    provider: str = Field(default="none", examples=["woodpecker"])
    server_url: str | None = None
    repo: str | None = Field(default=None, examples=["acme/shop"])
    has_token: bool = Field(default=False, description="the token itself is write-only")


class CIPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["woodpecker", "none"] = Field(
        description="`none` removes the project's CI settings and token"
    )
    server_url: str | None = Field(default=None, examples=["https://ci.example.org"])
    repo: str | None = Field(default=None, examples=["acme/shop"])
    token: str | None = Field(
        default=None, description="CI personal access token; write-only. Omitted: kept."
    )


class ProjectPatch(BaseModel):
    """Only the fields sent change. ``git_credential: null`` removes the credential."""

    model_config = ConfigDict(extra="forbid")

    default_branch: str | None = Field(default=None, min_length=1, max_length=255)
    git_credential: str | None = Field(default=None, description="write-only; null clears")
    default_agent: str | None = None
    labels: list[str] | None = None
    ci: CIPatch | None = None
    rotate_webhook_secret: bool = Field(
        default=False, description="true: a new webhook secret, returned once in this answer"
    )


class ProjectOut(BaseModel):
    id: str
    name: str
    repo_url: str
    default_branch: str
    has_git_credential: bool
    default_agent: str | None
    labels: list[str]
    created_at: datetime
    ci: CISettingsOut = Field(default_factory=lambda: CISettingsOut())
    links: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of(cls, p: Project) -> Self:
        return cls(
            **p.model_dump(include=set(ProjectOut.model_fields) - {"links", "ci"}),
            ci=CISettingsOut(**public_ci_settings(p.settings)),
            links={"self": f"/projects/{p.id}", "builds": f"/projects/{p.id}/builds"},
        )


class ProjectCreated(ProjectOut):
    webhook_secret: str | None = Field(
        default=None,
        description="The secret that signs this project's build callbacks (whsec_...). "
        "Shown only in this response (and on rotation); store it now.",
    )


class BuildAccepted(BaseModel):
    task_id: str
    status: BuildStatus
    created_at: datetime
    links: dict[str, str]


class BuildOut(BaseModel):
    task_id: str
    project_id: str
    project: str
    status: BuildStatus
    spec: BuildSpec
    result: BuildResult | None
    rendered_prompt: str | None
    template: dict[str, str | None] | None
    agent: dict[str, Any]
    ci: dict[str, Any] | None
    attempts: int
    max_attempts: int
    worker_id: str | None
    cancel_requested: bool
    pending_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: dict[str, str]


class BuildPage(BaseModel):
    items: list[BuildOut]
    next_cursor: str | None


class EventOut(BaseModel):
    seq: int
    from_status: BuildStatus | None = Field(serialization_alias="from")
    to_status: BuildStatus = Field(serialization_alias="to")
    at: datetime
    actor: str
    reason: str | None


class WorkerRegister(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    hostname: str | None = None
    labels: list[str] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list)
    agent_notes: dict[str, str] = Field(default_factory=dict)
    slots: int = Field(default=1, ge=1, le=256)
    version: str | None = None
    new_process: bool = Field(
        default=False,
        description="First registration of a new worker process: leases the name still "
        "holds are its previous process's and are taken back at once.",
    )


class WorkerRegistered(BaseModel):
    worker_id: str
    lease_seconds: float
    heartbeat_interval_seconds: float


class LeaseRef(BaseModel):
    task_id: str
    lease_token: str


class Heartbeat(BaseModel):
    tasks: list[LeaseRef] = Field(default_factory=list)


class HeartbeatAnswer(BaseModel):
    leases: dict[str, datetime]
    cancel: list[str]


class ClaimRequest(BaseModel):
    max_tasks: int = Field(default=1, ge=0, le=100)
    wait_seconds: float | None = Field(default=None, ge=0, le=60)


class LogChunk(BaseModel):
    text: str
    stream: str = "out"


class LogAppend(BaseModel):
    lease_token: str
    chunks: list[LogChunk]
    offset: int | None = Field(
        default=None,
        ge=0,
        description="Index of the first chunk within this attempt's log; makes a re-sent "
        "batch idempotent.",
    )


class Completion(BaseModel):
    lease_token: str
    result: BuildResult
    agent_info: dict[str, Any] | None = None


class BatchCompletionItem(Completion):
    task_id: str


class BatchCompletion(BaseModel):
    items: list[BatchCompletionItem] = Field(min_length=1, max_length=500)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] = Field(min_length=1)
    projects: list[str] | None = None
