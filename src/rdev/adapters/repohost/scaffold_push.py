"""push_scaffold: push a folder as a commit to a freshly created remote repository.

Used by hosted repo hosts (Gitea) after creating an empty repository. Works without a
checkout of the remote: a temporary git dir, the scaffold folder as the work tree (nothing is
written into it) and a temporary index. If the remote branch already has commits (the host
auto-initialised it, or generated it from a template repository) the scaffold is committed
on top of them, so the push is a fast-forward and existing files the scaffold does not
replace are kept.

The credential goes through :mod:`rdev.adapters.git.credentials` (an ``extraHeader`` in the
environment, scoped to the remote's origin) and every git process through
:class:`~rdev.adapters.git.runner.GitRunner`: never in a URL, a file or an error message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rdev.adapters.git.credentials import credential_config, scrubber_for
from rdev.adapters.git.runner import GitRunner

DEFAULT_MESSAGE = "Initial commit from template"


async def push_scaffold(
    clone_url: str,
    credential: str | None,
    scaffold_dir: Path,
    default_branch: str,
    *,
    message: str = DEFAULT_MESSAGE,
    author_name: str = "rdev",
    author_email: str = "rdev@localhost",
    runner: GitRunner | None = None,
) -> str:
    """Commit everything in ``scaffold_dir`` to ``default_branch`` of ``clone_url``; its sha.

    Raises :class:`rdev.ports.git.GitError` (``GitAuthFailed`` when the credential is
    refused); messages are scrubbed of the credential.
    """
    runner = runner or GitRunner(timeout=120)
    config = credential_config(clone_url, credential)
    scrubber = scrubber_for(credential)
    branch_ref = f"refs/heads/{default_branch}"
    with tempfile.TemporaryDirectory(prefix="rdev-scaffold-push-") as tmp:
        env = {
            "GIT_DIR": str(Path(tmp) / "git"),
            "GIT_WORK_TREE": str(scaffold_dir),
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
        }

        async def git(*args: str, remote: bool = False) -> str:
            result = await runner.run(
                list(args),
                cwd=scaffold_dir,
                env=env,
                config=config if remote else (),
                scrubber=scrubber,
            )
            return result.stdout

        await git("init", "-q", "-b", default_branch)
        remote_head = await git("ls-remote", "--heads", "--", clone_url, branch_ref, remote=True)
        if remote_head.strip():
            await git("fetch", "-q", "--depth=1", "--", clone_url, branch_ref, remote=True)
            await git("update-ref", branch_ref, "FETCH_HEAD")
            await git("read-tree", branch_ref)
        # --ignore-removal: files already on the remote branch and not in the scaffold stay.
        await git("add", "--ignore-removal", "--", ".")
        await git("commit", "-q", "--no-verify", "--allow-empty", "-m", message)
        await git("push", "-q", "--", clone_url, f"HEAD:{branch_ref}", remote=True)
        return (await git("rev-parse", "HEAD")).strip()
