"""GitCLI: the GitOperations port on the ``git`` binary (clone, changed files, commit, push).

Credentials go through :mod:`rdev.adapters.git.credentials` (environment only); processes
through :class:`~rdev.adapters.git.runner.GitRunner` (no prompts, timeouts, scrubbed errors).

Clones are shallow (``--depth 1 --single-branch``). The remote's refs are listed first
(``ls-remote``), which decides the strategy in one round trip and fails fast on a bad
credential:

* the branch exists: clone it;
* it does not: clone ``default_branch`` (or the remote HEAD) and create the branch locally;
  the push creates it on the remote;
* the remote is empty: ``git init`` + ``remote add origin``; the first push creates it.

The push goes to the URL the checkout was cloned from (remembered by this object; the
``origin`` remote is the fallback), so an agent that edits ``.git/config`` cannot redirect it.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rdev.adapters.git.credentials import credential_config, scrubber_for, split_userinfo
from rdev.adapters.git.runner import DEFAULT_SSH_COMMAND, GitResult, GitRunner, error_for
from rdev.domain.models import FileChange
from rdev.domain.secrets import SecretScrubber
from rdev.ports.git import GitAuthor, PushRejected

_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_CHANGE_KINDS = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "T": "modified"}
#: Rejections that mean "the branch moved (or is moving) under us": fetch, rebase, retry.
_RETRYABLE_PUSH = (
    "fetch first",
    "non-fast-forward",
    "stale info",
    "cannot lock ref",
    "failed to lock",
    "failed to update ref",
)


class GitCLI:
    """GitOperations with the git CLI.

    ``timeout`` bounds every single git command (seconds); ``ssh_command`` is used for ssh
    remotes (keep ``BatchMode=yes``).
    """

    def __init__(
        self,
        *,
        git_bin: str = "git",
        timeout: float = 600.0,
        ssh_command: str = DEFAULT_SSH_COMMAND,
    ) -> None:
        self.runner = GitRunner(git_bin=git_bin, timeout=timeout, ssh_command=ssh_command)
        self._origins: dict[str, str] = {}
        self._commits: dict[str, str] = {}

    # ------------------------------------------------------------------ clone
    async def clone(
        self, url: str, dest: Path, branch: str, default_branch: str, credential: str | None
    ) -> str:
        """Clone ``branch`` into ``dest`` (created from the default branch if missing).

        Returns the HEAD sha, or ``""`` for an empty remote (no commit yet).
        """
        url, embedded = split_userinfo(url)
        credential = credential or embedded
        scrubber = scrubber_for(credential)
        auth = credential_config(url, credential)
        dest = Path(dest)

        listing = await self.runner.run(
            ["ls-remote", "--symref", "--", url, "HEAD", "refs/heads/*"],
            config=auth,
            scrubber=scrubber,
        )
        heads, remote_head = _parse_ls_remote(listing.stdout)

        if not heads:
            dest.mkdir(parents=True, exist_ok=True)
            await self.runner.run(["init", "-q", "-b", branch, str(dest)], scrubber=scrubber)
            await self.runner.run(["remote", "add", "origin", url], cwd=dest, scrubber=scrubber)
            _remember(self._origins, _key(dest), url)
            return ""

        if branch in heads:
            source = branch
        elif default_branch in heads:
            source = default_branch
        else:
            source = remote_head or sorted(heads)[0]
        await self.runner.run(
            [
                "clone", "-q", "--depth", "1", "--single-branch", "--no-tags",
                "--branch", source, "--", url, str(dest),
            ],
            config=auth,
            scrubber=scrubber,
        )  # fmt: skip
        if source != branch:
            await self.runner.run(["checkout", "-q", "-b", branch], cwd=dest, scrubber=scrubber)
        _remember(self._origins, _key(dest), url)
        return await self._head(dest)

    # ---------------------------------------------------------- changed files
    async def changed_files(
        self, workdir: Path, exclude: list[str] | None = None
    ) -> list[FileChange]:
        """What a commit would contain now, vs HEAD (renames detected).

        Works on a throw-away copy of the index, so the checkout is left untouched.
        ``exclude`` has the same meaning as in :meth:`commit`.
        """
        workdir = Path(workdir)
        git_dir = workdir / ".git"
        if not git_dir.is_dir():  # a worktree or submodule: ask git where its dir is
            git_dir = Path((await self.runner.run(["rev-parse", "--absolute-git-dir"],
                                                  cwd=workdir)).stdout.strip())  # fmt: skip
        tmp_index = _copy_index(git_dir)
        try:
            env = {"GIT_INDEX_FILE": str(tmp_index)}
            await self._stage(workdir, exclude or [], env)
            diff = ["diff", "--cached", "--name-status", "-M", "-z"]
            out = await self.runner.run([*diff, "HEAD"], cwd=workdir, env=env, check=False)
            if out.returncode != 0:  # no commit yet (empty repository): diff the empty tree
                out = await self.runner.run([*diff, _EMPTY_TREE], cwd=workdir, env=env)
        finally:
            _remove(tmp_index)
        return _parse_name_status(out.stdout)

    # ----------------------------------------------------------------- commit
    async def commit(
        self, workdir: Path, message: str, author: GitAuthor, exclude: list[str] | None = None
    ) -> str | None:
        """Stage everything but new paths matching ``exclude``; commit; sha or None.

        ``exclude`` patterns follow .gitignore's shape: ``.claude/`` or ``*.log`` match at
        any depth, ``docs/tmp`` (with an inner slash) from the root. Paths the repository
        already tracks are always staged, even when they match.
        """
        workdir = Path(workdir)
        await self._stage(workdir, exclude or [], None)
        head = await self._head(workdir)
        diff = await self.runner.run(
            ["diff", "--cached", "--quiet", head or _EMPTY_TREE], cwd=workdir, check=False
        )
        if diff.returncode == 0:
            return None
        if diff.returncode != 1:
            raise error_for("git diff", diff)
        identity = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
        await self.runner.run(
            ["commit", "-q", "--no-verify", "--cleanup=whitespace", "-F", "-"],
            cwd=workdir,
            env=identity,
            stdin=message,
        )
        sha = await self._head(workdir)
        _remember(self._commits, _key(workdir), sha)
        return sha

    # ------------------------------------------------------------------- push
    async def push(
        self, workdir: Path, branch: str, credential: str | None, attempts: int = 3
    ) -> str:
        """Push HEAD to ``branch``; on non-fast-forward fetch, rebase and retry.

        Raises :class:`PushRejected` after ``attempts`` tries, on a rebase conflict (the
        rebase is aborted first) or when the remote refuses for another reason (a hook).
        """
        workdir = Path(workdir)
        url = await self._origin_url(workdir)
        url, embedded = split_userinfo(url)
        credential = credential or embedded
        scrubber = scrubber_for(credential)
        auth = credential_config(url, credential)
        refspec = f"HEAD:refs/heads/{branch}"
        last = ""
        for attempt in range(1, max(1, attempts) + 1):
            result = await self.runner.run(
                ["push", "--porcelain", "--", url, refspec],
                cwd=workdir, config=auth, scrubber=scrubber, check=False,
            )  # fmt: skip
            if result.returncode == 0:
                # Without a rebase the pushed sha is the commit made here: no extra git call.
                made = self._commits.pop(_key(workdir), None)
                return made if made and attempt == 1 else await self._head(workdir)
            status = _push_status(result)
            if status is None:
                raise error_for("git push", result)
            last = status
            if not any(reason in status for reason in _RETRYABLE_PUSH):
                raise PushRejected(f"push to {branch} rejected by the remote: {status}")
            if attempt < attempts:
                # A concurrent pusher may still hold the ref lock: back off a little.
                await asyncio.sleep(random.uniform(0.05, 0.25) * attempt)
                await self._rebase_onto_remote(workdir, url, branch, auth, scrubber)
        raise PushRejected(
            f"push to {branch} rejected after {attempts} attempts (the branch keeps moving): {last}"
        )

    # ---------------------------------------------------------------- helpers
    async def _rebase_onto_remote(
        self,
        workdir: Path,
        url: str,
        branch: str,
        auth: Sequence[tuple[str, str]],
        scrubber: SecretScrubber,
    ) -> None:
        tracking = f"refs/remotes/origin/{branch}"
        await self.runner.run(
            ["fetch", "-q", "--no-tags", "--", url, f"+refs/heads/{branch}:{tracking}"],
            cwd=workdir, config=auth, scrubber=scrubber,
        )  # fmt: skip
        base = await self.runner.run(["merge-base", "HEAD", tracking], cwd=workdir, check=False)
        if base.returncode != 0 and await self._is_shallow(workdir):
            # Shallow history does not reach the fork point: fetch the rest.
            await self.runner.run(
                ["fetch", "-q", "--no-tags", "--unshallow", "--", url,
                 f"+refs/heads/{branch}:{tracking}"],
                cwd=workdir, config=auth, scrubber=scrubber,
            )  # fmt: skip
        committer = await self.runner.run(["log", "-1", "--format=%cn%x00%ce", "HEAD"], cwd=workdir)
        name, _, email = committer.stdout.strip().partition("\0")
        identity = {
            "GIT_COMMITTER_NAME": name or "rdev",
            "GIT_COMMITTER_EMAIL": email or "rdev@localhost",
        }
        rebase = await self.runner.run(
            ["rebase", "--no-autostash", "--no-verify", tracking],
            cwd=workdir, env=identity, check=False,
        )  # fmt: skip
        if rebase.returncode == 0:
            return
        conflicted = await self.runner.run(
            ["diff", "--name-only", "--diff-filter=U"], cwd=workdir, check=False
        )
        await self.runner.run(["rebase", "--abort"], cwd=workdir, check=False)
        files = ", ".join(conflicted.stdout.split()) or "unknown files"
        raise PushRejected(
            f"push to {branch} rejected: the remote branch moved and rebasing onto it hit "
            f"a conflict in {files}"
        )

    async def _stage(self, workdir: Path, exclude: list[str], env: dict[str, str] | None) -> None:
        specs = _pathspecs(exclude)
        excluded = [f":(exclude,{s[2:]}" if s.startswith(":(") else f":(exclude){s}" for s in specs]
        await self.runner.run(["add", "-A", "--", ".", *excluded], cwd=workdir, env=env)
        if not specs:
            return
        # Tracked paths under the excluded patterns are still staged (changes and deletions).
        tracked = await self.runner.run(["ls-files", "-z", "--", *specs], cwd=workdir, env=env)
        if tracked.stdout.strip("\0"):
            await self.runner.run(
                ["--literal-pathspecs", "add", "-u", "--pathspec-from-file=-",
                 "--pathspec-file-nul"],
                cwd=workdir, env=env, stdin=tracked.stdout,
            )  # fmt: skip

    async def _head(self, workdir: Path) -> str:
        result = await self.runner.run(
            ["rev-parse", "--verify", "-q", "HEAD"], cwd=workdir, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    async def _is_shallow(self, workdir: Path) -> bool:
        out = await self.runner.run(["rev-parse", "--is-shallow-repository"], cwd=workdir)
        return out.stdout.strip() == "true"

    async def _origin_url(self, workdir: Path) -> str:
        known = self._origins.get(_key(workdir))
        if known:
            return known
        result = await self.runner.run(["remote", "get-url", "origin"], cwd=workdir)
        return result.stdout.strip()


def _remember(memo: dict[str, str], key: str, value: str, limit: int = 1000) -> None:
    """Keep per-checkout facts for the newest ``limit`` checkouts (a worker runs for weeks)."""
    memo.pop(key, None)
    memo[key] = value
    while len(memo) > limit:
        memo.pop(next(iter(memo)))


def _key(path: Path) -> str:
    return os.path.realpath(path)


def _copy_index(git_dir: Path) -> Path:
    """A private copy of the index (or a free name for one, when there is no index yet)."""
    fd, name = tempfile.mkstemp(prefix="rdev-index-", dir=git_dir)
    os.close(fd)
    copy, index = Path(name), git_dir / "index"
    if index.exists():
        copy.write_bytes(index.read_bytes())
        # Keep the index's mtime: git trusts an entry's stat data only when the file is
        # older than the index file, so a fresh mtime hides same-second, same-size edits.
        stat = index.stat()
        os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        copy.unlink()  # git wants "no index", not an empty file
    return copy


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _pathspecs(patterns: Sequence[str]) -> list[str]:
    """Glob pathspecs for .gitignore-shaped patterns (a path and everything below it)."""
    specs: list[str] = []
    for raw in (p.strip() for p in patterns):
        pattern = raw.strip("/")
        if not pattern:
            continue
        if "/" not in raw.rstrip("/"):  # no inner or leading slash: match at any depth
            pattern = f"**/{pattern}"
        specs += [f":(glob){pattern}", f":(glob){pattern}/**"]
    return specs


def _parse_ls_remote(text: str) -> tuple[set[str], str | None]:
    heads: set[str] = set()
    remote_head: str | None = None
    for line in text.splitlines():
        if line.startswith("ref: "):
            target, _, name = line[5:].partition("\t")
            if name == "HEAD" and target.startswith("refs/heads/"):
                remote_head = target[len("refs/heads/") :]
            continue
        _, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads.add(ref[len("refs/heads/") :])
    if remote_head not in heads:
        remote_head = None
    return heads, remote_head


def _parse_name_status(text: str) -> list[FileChange]:
    fields = text.split("\0")
    changes: list[FileChange] = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i]
        kind = _CHANGE_KINDS.get(status[0], "modified")
        if status[0] in "RC":
            old, new = fields[i + 1], fields[i + 2]
            i += 3
            if status[0] == "C":
                changes.append(FileChange(path=new, change="added"))
            else:
                changes.append(FileChange(path=new, change=kind, old_path=old))
        else:
            changes.append(FileChange(path=fields[i + 1], change=kind))
            i += 2
    return changes


def _push_status(result: GitResult) -> str | None:
    """The rejection reason from ``push --porcelain`` output, or None if not a rejection."""
    for line in result.stdout.splitlines():
        if line.startswith("!\t"):
            return line.split("\t", 2)[-1].strip()
    text = result.stderr
    if "[rejected]" in text or "[remote rejected]" in text:
        return text.strip().splitlines()[-1] if text.strip() else "rejected"
    return None
