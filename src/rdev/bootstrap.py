"""The one wiring module: builds the object graph from Settings.

Only this module imports adapters. Tests build a Container the same way, with their own
settings (database URL, data dir) — and may swap any adapter after construction.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from rdev.adapters.ci import build_ci_provider
from rdev.adapters.db.builds import SqlBuildStore
from rdev.adapters.db.ci_links import SqlCILinkStore
from rdev.adapters.db.deliveries import SqlDeliveryStore
from rdev.adapters.db.engine import Database
from rdev.adapters.db.hostnames import SqlHostnameStore
from rdev.adapters.db.idempotency import SqlIdempotencyStore
from rdev.adapters.db.leases import SqlLeaseReader
from rdev.adapters.db.live import LiveSignal
from rdev.adapters.db.migrate import current_revision, head_revision, upgrade
from rdev.adapters.db.notify import WorkNotifier
from rdev.adapters.db.projects import SqlProjectStore
from rdev.adapters.db.queue import SqlWorkQueue
from rdev.adapters.db.stats import SqlStats
from rdev.adapters.db.tokens import SqlTokenStore
from rdev.adapters.db.workers import SqlWorkerStore
from rdev.adapters.dns.reconcile import reconcile as dns_reconcile
from rdev.adapters.repohost.git_http import GitSmartHTTPApp
from rdev.adapters.repohost.gitea import GiteaRepoHost
from rdev.adapters.repohost.local import LocalRepoHost
from rdev.adapters.templates import FolderTemplateProvider, builtin_templates_dir
from rdev.adapters.webhooks import HttpWebhookSender, new_secret, next_delay
from rdev.config import Settings
from rdev.domain.errors import NotReady
from rdev.domain.events import BuildFinished, BuildsClaimed, ProjectDeleted
from rdev.domain.hostnames import effective_zones
from rdev.ports.ci import CIProvider, CISettings
from rdev.ports.repohost import RepoHost
from rdev.ports.templates import TemplateProvider
from rdev.services.builds import BuildService
from rdev.services.ci_linker import CILinker
from rdev.services.ci_settings import CISettingsService
from rdev.services.create_and_build import CreateAndBuildService
from rdev.services.events import EventBus
from rdev.services.hostnames import HostnameService
from rdev.services.metrics import Metrics
from rdev.services.pipelines import PipelineService
from rdev.services.projects import ProjectService
from rdev.services.repos import GitAccess, TaskGitCredentials, local_repository_remover
from rdev.services.tokens import TokenService
from rdev.services.webhooks import WebhookService, callback_checker
from rdev.services.workers import WorkerService

if TYPE_CHECKING:
    from rdev.adapters.agents.registry import AgentOptions
    from rdev.ports.dns import DNSProvider

log = structlog.get_logger(__name__)


@dataclass
class Container:
    settings: Settings
    db: Database
    notifier: WorkNotifier
    tokens: TokenService
    projects: ProjectService
    builds: BuildService
    workers: WorkerService
    queue: SqlWorkQueue
    #: Where services announce stored facts; the subscriptions are in build_container.
    events: EventBus
    #: Project hostnames and DNS aliases (``/projects/{id}/domains``, ``rdev domains``).
    hostnames: HostnameService
    templates: TemplateProvider
    pipelines: PipelineService
    ci_linker: CILinker
    webhooks: WebhookService
    metrics: Metrics
    live: LiveSignal
    repo_hosts: dict[str, RepoHost]
    create_and_build: CreateAndBuildService
    git_http: GitSmartHTTPApp  # local repositories over HTTP, mounted at /git
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    embedded_worker: asyncio.Task[Any] | None = None
    embedded_worker_stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    bootstrap_token: str | None = None

    async def start(self, *, migrate: bool = True, background: bool = True) -> None:
        if migrate:
            await upgrade(self.db.engine)
        await self.notifier.start()
        admin_token = self.settings.admin_token
        self.bootstrap_token = await self.tokens.ensure_admin(
            admin_token.get_secret_value() if admin_token else None
        )
        if background:
            self.background.append(
                asyncio.create_task(
                    self.workers.run_reaper(self.settings.reaper_interval_seconds, self.stop_event),
                    name="rdev-reaper",
                )
            )
            self.background.append(
                asyncio.create_task(
                    self.webhooks.run(self.stop_event), name="rdev-webhook-dispatcher"
                )
            )
            self.background.append(
                asyncio.create_task(
                    self.ci_linker.run_linker(self.stop_event), name="rdev-ci-linker"
                )
            )

    async def readiness(self) -> dict[str, str]:
        """What ``/readyz`` answers: the database is reachable and at this code's schema.

        Raises DatabaseUnavailable (503) when the database cannot be reached, and
        NotReady (503) when its migrations are behind or ahead of this code.
        """
        current, head = await current_revision(self.db), head_revision()
        if current != head:
            raise NotReady(
                f"the database schema is at migration {current or 'none'}, this server "
                f"needs {head}; run 'rdev migrate'"
            )
        return {"status": "ready", "database": self.db.dialect.name, "migration": head or ""}

    async def stop(self) -> None:
        self.stop_event.set()
        self.embedded_worker_stop.set()
        self.workers.drain()
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.notifier.stop()
        await self.db.dispose()


def build_container(settings: Settings) -> Container:
    """The server's object graph, built in dependency order and read top to bottom.

    Every service gets its collaborators in its constructor; what follows a stored fact
    (a claim, a result, a project's deletion) is the list of subscriptions at the end.
    """
    db = Database(settings.resolved_database_url)
    stop = asyncio.Event()
    events = EventBus()  # services publish stored facts; subscribers are wired at the end
    notifier = WorkNotifier(db)
    project_store = SqlProjectStore(db)
    build_store = SqlBuildStore(db, notifier)
    queue = SqlWorkQueue(db, notifier)
    worker_store = SqlWorkerStore(db)
    tokens = TokenService(SqlTokenStore(db))
    # DNS aliases (issue 8): a new project's canonical hostname must not be an alias
    # (ProjectService asks), a deleted project's CNAMEs are removed (a subscription, below).
    hostnames = HostnameService(
        SqlHostnameStore(db),
        project_store,
        dns_provider(settings),
        compare=dns_reconcile,
        apps_domain=settings.apps_domain,
        zones=effective_zones(settings.dns_zones, settings.apps_domain),
        max_aliases_per_project=settings.dns_max_aliases_per_project,
    )

    # Projects: a PATCH's CI settings are checked by building the provider with the one CI
    # adapter factory; callbacks are signed with a per-project secret made at creation.
    def ci_provider(ci: CISettings, timeout: float) -> CIProvider:
        return build_ci_provider(ci, timeout=timeout)

    projects = ProjectService(
        project_store,
        events,
        hostnames=hostnames,
        prepare_ci=CISettingsService(ci_provider).prepare,
        new_webhook_secret=new_secret,
    )
    # Builds and the worker protocol, built with everything they use: the templates that
    # render a spec's prompt, the webhook sender's URL guard for callback URLs at submit,
    # the local host's task git credentials for claims, and the event bus a claim and a
    # result are announced on (who listens: the subscriptions at the end).
    extra_templates = [settings.templates_dir] if settings.templates_dir else []
    templates = FolderTemplateProvider([builtin_templates_dir(), *extra_templates])
    webhook_sender = HttpWebhookSender(
        settings.webhook_allowlist, timeout=settings.webhook_timeout_seconds
    )
    task_git = TaskGitCredentials(SqlLeaseReader(db))
    builds = BuildService(
        projects=project_store,
        builds=build_store,
        workers=worker_store,
        templates=templates,
        check_callback=callback_checker(webhook_sender),
        default_agent=settings.default_agent,
        max_attempts=settings.max_attempts,
        offline_after_seconds=settings.worker_offline_after_seconds,
    )
    workers = WorkerService(
        workers=worker_store,
        queue=queue,
        notifier=notifier,
        events=events,
        credentials=task_git,
        lease_seconds=settings.lease_seconds,
        claim_wait_seconds=settings.claim_wait_seconds,
        offline_after_seconds=settings.worker_offline_after_seconds,
        retry_delay_seconds=settings.retry_delay_seconds,
        max_retryable_failures=settings.max_retryable_failures,
    )
    # CI (issue 7): the pipelines proxy and the CI linker (it follows pushed builds: a
    # BuildFinished subscription, below), with the same provider factory as the CI check.
    pipelines = PipelineService(projects, ci_provider)
    ci_linker = CILinker(
        SqlCILinkStore(db),
        ci_provider,
        poll_interval=settings.ci_poll_interval_seconds,
        link_timeout=settings.ci_link_timeout_seconds,
    )
    # Watching builds (issue 9): the metrics registry; live log streams' wake-ups.
    live = LiveSignal(db, stop=stop)
    metrics = Metrics(
        stats=SqlStats(db), queue=queue, offline_after_seconds=settings.worker_offline_after_seconds
    )
    # Build callbacks (issue 5): the outbox dispatcher (every attempt counted in the metrics)
    # and the deliveries API. The rows are written with the status change, the URL is
    # checked at submit (BuildService above), projects get their signing secret at creation.
    webhooks = WebhookService(
        store=SqlDeliveryStore(db),
        sender=webhook_sender,
        delay=next_delay,
        max_attempts=settings.webhook_max_attempts,
        timeout=settings.webhook_timeout_seconds,
        on_attempt=metrics.record_delivery,
    )
    # Repo hosts, git over HTTP at /git, create-and-build (issue 6).
    serve_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    local_host = LocalRepoHost(
        (settings.data_dir / "repos").resolve(),
        settings.public_url or f"http://{serve_host}:{settings.port}",
    )
    repo_hosts: dict[str, RepoHost] = {"local": local_host}
    if settings.gitea_url and settings.gitea_token:
        repo_hosts["gitea"] = GiteaRepoHost(
            settings.gitea_url, settings.gitea_token.get_secret_value()
        )
    git_http = GitSmartHTTPApp(local_host.repos_dir, GitAccess(tokens, project_store, task_git))
    create_and_build = CreateAndBuildService(
        projects=projects,
        builds=builds,
        templates=templates,
        repo_hosts=repo_hosts,
        idempotency=SqlIdempotencyStore(db),
        default_host=settings.repo_host,
    )
    # -- what follows a claim and a result: subscribers run in this order; one that fails
    # is logged and skipped (the stored claim or result stands) --
    events.subscribe(BuildsClaimed, webhooks.on_builds_claimed)  # build.started: send soon
    events.subscribe(BuildsClaimed, metrics.observe_claims)  # claim latency
    events.subscribe(BuildFinished, webhooks.on_build_complete)  # the callback: send soon
    events.subscribe(BuildFinished, ci_linker.on_build_complete)  # follow a pushed commit
    events.subscribe(BuildFinished, metrics.observe_completion)  # build duration
    # -- what follows a project's deletion --
    events.subscribe(ProjectDeleted, hostnames.on_project_deleted)  # its aliases' CNAMEs
    events.subscribe(ProjectDeleted, local_repository_remover(local_host))  # delete_repository
    return Container(
        settings=settings,
        db=db,
        notifier=notifier,
        tokens=tokens,
        projects=projects,
        builds=builds,
        workers=workers,
        queue=queue,
        events=events,
        hostnames=hostnames,
        templates=templates,
        pipelines=pipelines,
        ci_linker=ci_linker,
        webhooks=webhooks,
        metrics=metrics,
        live=live,
        repo_hosts=repo_hosts,
        create_and_build=create_and_build,
        git_http=git_http,
        stop_event=stop,
    )


def build_worker(
    settings: Settings,
    *,
    server: str,
    token: str,
    name: str,
    slots: int | None = None,
    labels: list[str] | None = None,
) -> Any:
    """The worker daemon with its git and agent adapters (for ``rdev worker`` and embedded)."""
    import os

    from rdev.adapters.agents.registry import build_agents, offered
    from rdev.adapters.git.cli import GitCLI
    from rdev.ports.git import GitAuthor
    from rdev.worker.client import WorkerClient
    from rdev.worker.daemon import WorkerDaemon, WorkerOptions
    from rdev.worker.executor import (
        DEFAULT_PRIVATE_PATHS,
        BuildExecutor,
        ExecutorConfig,
        worker_workdir_root,
    )

    agents = build_agents(agent_options(settings))
    names, notes = offered(agents)
    for agent_name, why in notes.items():
        log.warning("agent not offered", agent=agent_name, reason=why)
    from rdev.adapters.agents import AGENT_PRIVATE_PATHS as private

    secrets = [
        os.environ.get(k, "") for k in settings.agent_env_allowlist if "KEY" in k or "TOKEN" in k
    ]
    git = GitCLI(ssh_command=settings.git_ssh_command) if settings.git_ssh_command else GitCLI()
    executor = BuildExecutor(
        git,
        {n: agents[n] for n in names},
        ExecutorConfig(
            workdir_root=worker_workdir_root(settings.worker_workdir, name),
            keep_failed_workdirs=settings.keep_failed_workdirs,
            author=GitAuthor(settings.git_author_name, settings.git_author_email),
            default_timeout_seconds=settings.default_timeout_seconds,
            private_paths=tuple(sorted(set(private) | set(DEFAULT_PRIVATE_PATHS))),
        ),
        secrets=[token, *secrets],
    )
    options = WorkerOptions(
        name=name,
        slots=slots or settings.worker_slots,
        labels=labels or [],
        agents=names,
        agent_notes=notes,
        grace_seconds=settings.shutdown_grace_seconds,
    )
    return WorkerDaemon(WorkerClient(server, token), executor, options)


async def migrate_database(settings: Settings) -> None:
    """Apply the migrations to the configured database (``rdev migrate``; the server also
    migrates at start-up, in :meth:`Container.start`)."""
    db = Database(settings.resolved_database_url)
    try:
        await upgrade(db.engine)
    finally:
        await db.dispose()


# -- settings -> the plain values adapters take (adapters never read Settings) ------------


def dns_provider(settings: Settings) -> DNSProvider:
    """The DNSProvider ``RDEV_DNS_*`` asks for; the TSIG secret is revealed only here.

    Raises ValueError (naming the setting, never the secret) for an unusable setting.
    """
    from rdev.adapters.dns import build_dns_provider

    secret = settings.dns_tsig_secret
    return build_dns_provider(
        settings.dns_provider,
        server=settings.dns_server,
        port=settings.dns_port,
        zones=effective_zones(settings.dns_zones, settings.apps_domain),
        tsig_name=settings.dns_tsig_name,
        tsig_algorithm=settings.dns_tsig_algorithm,
        tsig_secret=secret.get_secret_value() if secret is not None else None,
    )


def agent_options(settings: Settings) -> AgentOptions:
    """How the worker's agents are built (``RDEV_COMMAND_AGENT``, ``RDEV_*_BIN``, ...)."""
    from rdev.adapters.agents.registry import AgentOptions

    return AgentOptions(
        command=settings.command_agent,
        claude_bin=settings.claude_bin,
        opencode_bin=settings.opencode_bin,
        env_allowlist=tuple(settings.agent_env_allowlist),
        opencode_provider=settings.opencode_provider,
        opencode_model=settings.opencode_model,
        opencode_cost_per_mtok_input=settings.opencode_cost_per_mtok_input,
        opencode_cost_per_mtok_output=settings.opencode_cost_per_mtok_output,
    )
