"""WoodpeckerCI: the CIProvider port over Woodpecker's REST API (``/api``, Swagger 2.0).

What a caller must know:

* The repository is configured as ``owner/name``; it is resolved once to Woodpecker's numeric
  repo id (``GET /api/repos/lookup/{owner}/{name}``) and cached per process, keyed by server URL
  and repo name. A 404 on a repo-scoped call drops the cached id so a re-activated repo is found.
* Paging: Woodpecker serves at most 50 items a page and no total. Our ``page``/``per_page`` are
  honoured exactly up to ``MAX_PER_PAGE`` (100): a page larger than 50 is filled from several
  Woodpecker pages. Pages are offsets, so a pipeline created between two calls shifts items.
* Filters are all server-side: ``branch`` (exact), ``event`` (one Woodpecker event or a comma
  list, passed through; an unknown one is a 400 upstream → ``ValidationFailed``), ``status``
  (one of our normalized states, or one raw Woodpecker status). A normalized state that stands
  for several Woodpecker values (``pending`` = created+pending, ``cancelled`` =
  killed+canceled+declined) is fetched as one server-filtered stream per value, merged by
  number; such a list pages down to the 500 newest matches (``MAX_MERGED_DEPTH``).
* Errors are domain errors with our own wording; Woodpecker's bodies are never passed on and
  the token never appears (every message goes through :class:`SecretScrubber`).
* ``timeout`` bounds each HTTP request (connect + wait + read), default 10 s.
* ``client``: pass the process's shared ``httpx.AsyncClient`` (the caller closes it); without
  one, each request uses a short-lived client, so there is nothing to close.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from rdev.adapters.ci.woodpecker_mapping import (
    RAW_STATUSES_FOR,
    WOODPECKER_EVENTS,
    WOODPECKER_STATUS_MAP,
    pipeline_from_json,
)
from rdev.domain.errors import NotFound, UpstreamFailed, UpstreamTimeout, ValidationFailed
from rdev.domain.secrets import SecretScrubber
from rdev.ports.ci import Pipeline

log = logging.getLogger(__name__)

#: Woodpecker's hard maximum of ``perPage``.
WOODPECKER_MAX_PER_PAGE = 50
#: The largest ``per_page`` we accept (filled from several Woodpecker pages above 50).
MAX_PER_PAGE = 100
#: How deep a merged-status list may page (each raw status is fetched from the start).
MAX_MERGED_DEPTH = 500
#: How many recent pipelines ``find_pipeline_for_commit`` scans by default.
DEFAULT_COMMIT_SCAN = 100

_REPO_NAME = re.compile(r"^[^/\s]+(/[^/\s]+)+$")
_EVENT_LIST = re.compile(r"^[a-z_]+(,[a-z_]+)*$")
_HEX = re.compile(r"^[0-9a-fA-F]{7,64}$")

# (server_url, repo_full_name) → Woodpecker repo id. Per process; ids never change for an
# activated repo, and a 404 drops the entry.
_repo_id_cache: dict[tuple[str, str], int] = {}


def clear_repo_id_cache() -> None:
    """Forget every resolved repo id (tests; or after reconfiguring a project)."""
    _repo_id_cache.clear()


class WoodpeckerCI:
    """CIProvider for one repository on one Woodpecker server."""

    def __init__(
        self,
        server_url: str,
        repo_full_name: str,
        token: str,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._scrubber = SecretScrubber([token])
        server = (server_url or "").strip().rstrip("/")
        if server.endswith("/api"):
            server = server[: -len("/api")]
        if not server.startswith(("http://", "https://")) or not urlsplit(server).hostname:
            raise ValidationFailed(
                "CI server URL must start with http:// or https://", field="server_url"
            )
        if "@" in urlsplit(server).netloc:
            raise ValidationFailed(
                "CI server URL must not contain credentials (the token is given apart)",
                field="server_url",
            )
        repo = (repo_full_name or "").strip().strip("/")
        if not _REPO_NAME.match(repo):
            raise ValidationFailed("CI repository must be given as 'owner/name'", field="repo")
        if not token:
            raise ValidationFailed("CI token is required", field="token")
        self.server_url = server
        self.repo_full_name = repo
        self._token = token
        self._timeout = timeout
        self._client = client
        # Shown in messages: no userinfo, no token.
        self._server_shown = self._scrubber.scrub(server)

    # -- the port ----------------------------------------------------------------------------

    async def list_pipelines(
        self,
        page: int = 1,
        per_page: int = 25,
        branch: str | None = None,
        event: str | None = None,
        status: str | None = None,
    ) -> list[Pipeline]:
        """Newest first. See the module docstring for paging and filters."""
        if page < 1:
            raise ValidationFailed("page must be 1 or more", field="page")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValidationFailed(
                f"per_page must be between 1 and {MAX_PER_PAGE}", field="per_page"
            )
        params: dict[str, str] = {}
        if branch:
            params["branch"] = branch
        if event:
            if not _EVENT_LIST.match(event):
                raise ValidationFailed(
                    f"event must be one of {', '.join(WOODPECKER_EVENTS)} (or a comma list)",
                    field="event",
                )
            params["event"] = event
        raw_statuses = _raw_statuses(status)
        repo_id = await self._repo_id()
        start, stop = (page - 1) * per_page, page * per_page
        if len(raw_statuses) <= 1:
            if raw_statuses:
                params["status"] = raw_statuses[0]
            items = await self._fetch_slice(repo_id, params, start, stop)
        else:
            if stop > MAX_MERGED_DEPTH:
                raise ValidationFailed(
                    f"status={status} lists only the {MAX_MERGED_DEPTH} newest pipelines; "
                    "filter by one Woodpecker status ("
                    + ", ".join(raw_statuses)
                    + ") to page further",
                    field="page",
                )
            # One server-filtered stream per raw status; the first `stop` of each suffice.
            streams = await asyncio.gather(
                *(
                    self._fetch_slice(repo_id, {**params, "status": s}, 0, stop)
                    for s in raw_statuses
                )
            )
            merged = heapq.merge(*streams, key=lambda p: -int(p["number"]))
            items = list(merged)[start:stop]
        return [self._pipeline(repo_id, item) for item in items]

    async def get_pipeline(self, number: int | str) -> Pipeline:
        """One pipeline with its workflows and steps. ``"latest"`` is the newest pipeline on
        the repository's default branch."""
        key = _pipeline_key(number)
        repo_id = await self._repo_id()
        data = await self._get_json(
            f"/api/repos/{repo_id}/pipelines/{key}",
            not_found=(
                "the CI repository has no pipeline yet"
                if key == "latest"
                else f"CI pipeline {key} not found"
            ),
            repo_scoped=True,
        )
        if not isinstance(data, dict) or "number" not in data:
            raise self._bad_response()
        return self._pipeline(repo_id, data)

    async def find_pipeline_for_commit(
        self,
        sha: str,
        *,
        branch: str | None = None,
        max_pipelines: int = DEFAULT_COMMIT_SCAN,
    ) -> Pipeline | None:
        """The newest pipeline built from commit ``sha`` (full SHA or a prefix of 7+), with
        workflows and steps, or None.

        Woodpecker cannot filter by commit, so this scans the ``max_pipelines`` most recent
        pipelines (optionally only on ``branch``), newest first, stopping at the first match.
        Restarts and PR pipelines of the same commit have higher numbers, so the newest run
        wins.
        """
        if not _HEX.match(sha or ""):
            raise ValidationFailed("commit SHA must be 7 to 64 hex characters", field="sha")
        want = sha.lower()
        repo_id = await self._repo_id()
        params = {"branch": branch} if branch else {}
        page_no = 1
        seen = 0
        while seen < max_pipelines:
            batch = await self._list_page(repo_id, params, page_no, WOODPECKER_MAX_PER_PAGE)
            for item in batch:
                if str(item.get("commit") or "").lower().startswith(want):
                    return await self.get_pipeline(int(item["number"]))
            seen += len(batch)
            if len(batch) < WOODPECKER_MAX_PER_PAGE:
                return None
            page_no += 1
        return None

    # -- helpers -----------------------------------------------------------------------------

    def web_url(self, repo_id: int, number: int) -> str:
        """The pipeline's page in Woodpecker's web UI."""
        return f"{self._server_shown}/repos/{repo_id}/pipeline/{number}"

    def _pipeline(self, repo_id: int, data: dict[str, Any]) -> Pipeline:
        try:
            return pipeline_from_json(data, self.web_url(repo_id, int(data["number"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad_response() from exc

    async def _repo_id(self) -> int:
        key = (self.server_url, self.repo_full_name)
        cached = _repo_id_cache.get(key)
        if cached is not None:
            return cached
        # Path segments quoted one by one: the lookup route is a catch-all, slashes stay.
        path = "/".join(quote(part, safe="") for part in self.repo_full_name.split("/"))
        data = await self._get_json(
            f"/api/repos/lookup/{path}",
            not_found=(
                f"CI repository '{self.repo_full_name}' not found on {self._server_shown} "
                "(not activated in Woodpecker, or not visible to the token)"
            ),
        )
        repo_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(repo_id, int) or isinstance(repo_id, bool) or repo_id < 1:
            raise self._bad_response()
        _repo_id_cache[key] = repo_id
        return repo_id

    async def _fetch_slice(
        self, repo_id: int, params: dict[str, str], start: int, stop: int
    ) -> list[dict[str, Any]]:
        """Items ``[start, stop)`` of the filtered, newest-first list."""
        size = stop - start
        # One request when our page lines up with a Woodpecker page, else 50-item pages.
        wp_size = (
            size
            if size <= WOODPECKER_MAX_PER_PAGE and start % size == 0
            else WOODPECKER_MAX_PER_PAGE
        )
        first, last = start // wp_size + 1, (stop - 1) // wp_size + 1
        items: list[dict[str, Any]] = []
        for page_no in range(first, last + 1):
            batch = await self._list_page(repo_id, params, page_no, wp_size)
            items.extend(batch)
            if len(batch) < wp_size:
                break
        offset = start - (first - 1) * wp_size
        return items[offset : offset + size]

    async def _list_page(
        self, repo_id: int, params: dict[str, str], page: int, per_page: int
    ) -> list[dict[str, Any]]:
        data = await self._get_json(
            f"/api/repos/{repo_id}/pipelines",
            params={**params, "page": str(page), "perPage": str(per_page)},
            not_found=f"CI repository '{self.repo_full_name}' not found",
            bad_request=(
                "Woodpecker rejected the pipeline filters; event must be one of "
                + ", ".join(WOODPECKER_EVENTS)
                if "event" in params
                else None
            ),
            repo_scoped=True,
        )
        if not isinstance(data, list) or not all(
            isinstance(i, dict) and isinstance(i.get("number"), int) for i in data
        ):
            raise self._bad_response()
        return data

    async def _get_json(
        self,
        path: str,
        *,
        params: dict[str, str] | None = None,
        not_found: str,
        bad_request: str | None = None,
        repo_scoped: bool = False,
    ) -> Any:
        url = self.server_url + path
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            async with self._http() as client:
                async with asyncio.timeout(self._timeout):
                    resp = await client.get(
                        url, params=params, headers=headers, timeout=self._timeout
                    )
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamTimeout(
                self._scrub(
                    f"CI server {self._server_shown} did not answer within {self._timeout:g} s"
                )
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamFailed(
                self._scrub(f"CI server {self._server_shown} is unreachable ({type(exc).__name__})")
            ) from None
        code = resp.status_code
        if code == 200:
            try:
                return resp.json()
            except ValueError:
                raise self._bad_response() from None
        log.info("woodpecker %s answered %s", self._scrub(path), code)
        if code in (401, 403):
            raise UpstreamFailed("CI token rejected")
        if code == 404:
            if repo_scoped:
                _repo_id_cache.pop((self.server_url, self.repo_full_name), None)
            raise NotFound(self._scrub(not_found))
        if code == 400:
            if bad_request:
                raise ValidationFailed(self._scrub(bad_request), field="event")
            raise UpstreamFailed("CI server rejected the request as malformed (HTTP 400)")
        raise UpstreamFailed(self._scrub(f"CI server {self._server_shown} answered HTTP {code}"))

    @asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx.AsyncClient]:
        """The injected client, or a short-lived one per request (nothing left to close)."""
        if self._client is not None:
            yield self._client
            return
        async with httpx.AsyncClient(follow_redirects=False) as client:
            yield client

    def _bad_response(self) -> UpstreamFailed:
        return UpstreamFailed(
            self._scrub(f"CI server {self._server_shown} returned an unexpected response")
        )

    def _scrub(self, text: str) -> str:
        return self._scrubber.scrub(text)


def _raw_statuses(status: str | None) -> list[str]:
    """Our state → the Woodpecker values to ask for; a raw Woodpecker value is passed as is."""
    if not status:
        return []
    if status in RAW_STATUSES_FOR:
        return list(RAW_STATUSES_FOR[status])
    if status in WOODPECKER_STATUS_MAP:
        return [status]
    raise ValidationFailed(
        "status must be one of " + ", ".join(sorted(RAW_STATUSES_FOR)), field="status"
    )


def _pipeline_key(number: int | str) -> str:
    if isinstance(number, bool):
        raise ValidationFailed(
            "pipeline number must be a positive integer or 'latest'", field="number"
        )
    if isinstance(number, int) and number >= 1:
        return str(number)
    if isinstance(number, str):
        text = number.strip()
        if text == "latest":
            return text
        if text.isascii() and text.isdigit() and int(text) >= 1:
            return str(int(text))
    raise ValidationFailed("pipeline number must be a positive integer or 'latest'", field="number")
