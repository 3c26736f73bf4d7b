"""The one wiring module: builds the object graph from Settings.

Only this module imports adapters. Tests build a Container the same way, with their own
settings (database URL, data dir) — and may swap any adapter after construction.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from rdev.adapters.db.builds import SqlBuildStore
from rdev.adapters.db.engine import Database
from rdev.adapters.db.migrate import upgrade
from rdev.adapters.db.notify import WorkNotifier
from rdev.adapters.db.projects import SqlProjectStore
from rdev.adapters.db.queue import SqlWorkQueue
from rdev.adapters.db.tokens import SqlTokenStore
from rdev.adapters.db.workers import SqlWorkerStore
from rdev.config import Settings
from rdev.services.builds import BuildService
from rdev.services.projects import ProjectService
from rdev.services.tokens import TokenService
from rdev.services.workers import WorkerService

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
    # Feature services wired below (None when not configured).
    templates: Any = None
    hostnames: Any = None
    pipelines: Any = None
    webhooks: Any = None
    metrics: Any = None
    live: Any = None
    repo_hosts: dict[str, Any] = field(default_factory=dict)
    create_and_build: Any = None
    git_http: Any = None  # the ASGI app serving local repositories, mounted at /git
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    embedded_worker: asyncio.Task[Any] | None = None
    embedded_worker_stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    bootstrap_token: str | None = None

    async def start(self, *, migrate: bool = True, background: bool = True) -> None:
        if migrate:
            await upgrade(self.db.engine)
        await self.notifier.start()
        self.bootstrap_token = await self.tokens.ensure_admin(self.settings.admin_token)
        if background:
            self.background.append(
                asyncio.create_task(
                    self.workers.run_reaper(self.settings.reaper_interval_seconds, self.stop_event),
                    name="rdev-reaper",
                )
            )
            if self.webhooks is not None:
                self.background.append(
                    asyncio.create_task(
                        self.webhooks.run(self.stop_event), name="rdev-webhook-dispatcher"
                    )
                )
            if self.pipelines is not None:
                self.background.append(
                    asyncio.create_task(
                        self.pipelines.run_linker(self.stop_event), name="rdev-ci-linker"
                    )
                )

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
    db = Database(settings.resolved_database_url)
    notifier = WorkNotifier(db)
    project_store = SqlProjectStore(db)
    build_store = SqlBuildStore(db, notifier)
    queue = SqlWorkQueue(db, notifier)
    worker_store = SqlWorkerStore(db)
    tokens = TokenService(SqlTokenStore(db))
    projects = ProjectService(project_store)
    builds = BuildService(
        projects=project_store,
        builds=build_store,
        workers=worker_store,
        default_agent=settings.default_agent,
        max_attempts=settings.max_attempts,
        offline_after_seconds=settings.worker_offline_after_seconds,
    )
    workers = WorkerService(
        workers=worker_store,
        queue=queue,
        notifier=notifier,
        lease_seconds=settings.lease_seconds,
        claim_wait_seconds=settings.claim_wait_seconds,
        offline_after_seconds=settings.worker_offline_after_seconds,
        retry_delay_seconds=settings.retry_delay_seconds,
        max_retryable_failures=settings.max_retryable_failures,
    )
    container = Container(
        settings=settings,
        db=db,
        notifier=notifier,
        tokens=tokens,
        projects=projects,
        builds=builds,
        workers=workers,
        queue=queue,
    )
    # -- feature wiring (one block per feature) --
    # DNS aliases (issue 8): the HostnameService; project deletion also removes the CNAMEs.
    from rdev.adapters.db.hostnames import SqlHostnameStore
    from rdev.adapters.dns import build_dns_provider
    from rdev.adapters.dns.reconcile import reconcile as dns_reconcile
    from rdev.domain.hostnames import effective_zones
    from rdev.services.hostnames import AliasReleasingProjectStore, HostnameService

    container.hostnames = HostnameService(
        SqlHostnameStore(db),
        project_store,
        build_dns_provider(settings),
        compare=dns_reconcile,
        apps_domain=settings.apps_domain,
        zones=effective_zones(settings.dns_zones, settings.apps_domain),
        max_aliases_per_project=settings.dns_max_aliases_per_project,
    )
    projects.store = AliasReleasingProjectStore(projects.store, container.hostnames)
    projects.before_create.append(container.hostnames.refuse_taken_hostname)
    # Build callbacks (issue 5): outbox dispatcher, submit-time SSRF check, project secrets.
    from rdev.adapters.db.deliveries import SqlDeliveryStore
    from rdev.adapters.webhooks import HttpWebhookSender, new_secret, next_delay
    from rdev.services.webhooks import WebhookService, callback_checker

    webhook_sender = HttpWebhookSender(
        settings.webhook_allowlist, timeout=settings.webhook_timeout_seconds
    )
    container.webhooks = WebhookService(
        store=SqlDeliveryStore(db),
        sender=webhook_sender,
        delay=next_delay,
        max_attempts=settings.webhook_max_attempts,
        timeout=settings.webhook_timeout_seconds,
    )
    builds.check_callback = callback_checker(webhook_sender.check_url)
    workers.on_complete.append(container.webhooks.on_build_complete)
    workers.on_claim.append(container.webhooks.on_builds_claimed)
    projects.new_webhook_secret = new_secret
    # CI pipelines (issue 7): the proxy, PATCH ci validation, and the CI linker.
    from rdev.adapters.ci import build_ci_provider
    from rdev.adapters.db.ci_links import SqlCILinkStore
    from rdev.services.pipelines import PipelineService

    container.pipelines = PipelineService(
        projects,
        SqlCILinkStore(db),
        lambda ci, timeout: build_ci_provider(ci, timeout=timeout),
        poll_interval=settings.ci_poll_interval_seconds,
        link_timeout=settings.ci_link_timeout_seconds,
    )
    projects.prepare_ci = container.pipelines.prepare_ci_settings
    workers.on_complete.append(container.pipelines.on_build_complete)
    # Watching builds (issue 9): metrics registry per container; live log stream wake-ups.
    from rdev.adapters.db.live import LiveSignal
    from rdev.adapters.db.stats import SqlStats
    from rdev.services.metrics import Metrics

    container.live = LiveSignal(db, tasks=container.background, stop=container.stop_event)
    container.metrics = Metrics(
        stats=SqlStats(db), queue=queue, offline_after_seconds=settings.worker_offline_after_seconds
    )
    container.webhooks.on_attempt = container.metrics.record_delivery
    workers.on_claim.append(container.metrics.observe_claims)
    workers.on_complete.append(container.metrics.observe_completion)
    # Templates, repo hosts, git over HTTP at /git, create-and-build (issue 6).
    from rdev.adapters.db.idempotency import SqlIdempotencyStore
    from rdev.adapters.db.leases import SqlLeaseReader
    from rdev.adapters.repohost.git_http import GitSmartHTTPApp
    from rdev.adapters.repohost.gitea import GiteaRepoHost
    from rdev.adapters.repohost.local import LocalRepoHost
    from rdev.adapters.templates import FolderTemplateProvider, builtin_templates_dir
    from rdev.services.create_and_build import CreateAndBuildService
    from rdev.services.repos import (
        GitAccess,
        LocalCredentialQueue,
        TaskGitCredentials,
        local_repository_remover,
    )

    extra_templates = [settings.templates_dir] if settings.templates_dir else []
    container.templates = FolderTemplateProvider([builtin_templates_dir(), *extra_templates])
    builds.templates = container.templates
    serve_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    local_host = LocalRepoHost(
        (settings.data_dir / "repos").resolve(),
        settings.public_url or f"http://{serve_host}:{settings.port}",
    )
    container.repo_hosts["local"] = local_host
    if settings.gitea_url and settings.gitea_token:
        container.repo_hosts["gitea"] = GiteaRepoHost(settings.gitea_url, settings.gitea_token)
    task_git = TaskGitCredentials(SqlLeaseReader(db))
    workers.queue = LocalCredentialQueue(workers.queue, project_store, task_git)
    container.git_http = GitSmartHTTPApp(
        local_host.repos_dir, GitAccess(tokens, project_store, task_git)
    )
    projects.on_delete.append(local_repository_remover(local_host))
    container.create_and_build = CreateAndBuildService(
        projects=projects,
        builds=builds,
        templates=container.templates,
        repo_hosts=container.repo_hosts,
        idempotency=SqlIdempotencyStore(db),
        default_host=settings.repo_host,
    )
    return container


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
    from rdev.worker.executor import DEFAULT_PRIVATE_PATHS, BuildExecutor, ExecutorConfig

    agents = build_agents(settings)
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
            workdir_root=settings.worker_workdir,
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
