"""GitCLI against real git and a real token-protected smart-HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from pathlib import Path

import pytest

from rdev.adapters.git import GitAuthFailed, GitCLI, commit_message
from rdev.ports.git import GitAuthor, GitError, PushRejected
from tests.fixtures.git_server import GitServer, git
from tests.fixtures.git_server import git_server as git_server_fixture

git_server = git_server_fixture  # the fixture, under its own name

AUTHOR = GitAuthor(name="Build Bot", email="bot@example.invalid")


@pytest.fixture
def gitcli() -> GitCLI:
    return GitCLI(timeout=30)


def secret_forms(token: str) -> list[str]:
    return [
        token,
        base64.b64encode(f"x-access-token:{token}".encode()).decode().rstrip("="),
    ]


def assert_no_secret(text: str, token: str) -> None:
    for form in secret_forms(token):
        assert form not in text


def all_git_metadata(workdir: Path) -> str:
    chunks = []
    for path in (workdir / ".git").rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            chunks.append(path.read_bytes().decode("latin-1"))
    return "\n".join(chunks)


async def clone(gitcli: GitCLI, server: GitServer, repo: str, dest: Path, branch: str = "main"):
    return await gitcli.clone(server.url_for(repo), dest, branch, "main", server.token)


# ---------------------------------------------------------------- clone & auth


async def test_clone_over_http_with_token_checks_out_the_branch(gitcli, git_server, tmp_path):
    git_server.make_repo("demo", {"README.md": "hello\n"})
    sha = await clone(gitcli, git_server, "demo", tmp_path / "w")
    assert sha == git_server.head("demo", "main")
    assert (tmp_path / "w" / "README.md").read_text() == "hello\n"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=tmp_path / "w").strip() == "main"


async def test_clone_is_shallow(gitcli, git_server, tmp_path):
    git_server.make_repo("deep")
    git_server.commit("deep", {"second.txt": "2\n"})
    await clone(gitcli, git_server, "deep", tmp_path / "w")
    assert git("rev-list", "--count", "HEAD", cwd=tmp_path / "w").strip() == "1"


async def test_wrong_token_fails_fast_with_authentication_error_and_no_secret(
    gitcli, git_server, tmp_path
):
    url = git_server.make_repo("demo")
    wrong = "wrong-token-" + "x" * 20
    with pytest.raises(GitAuthFailed) as info:  # not a prompt waiting on the clone's timeout
        await asyncio.wait_for(gitcli.clone(url, tmp_path / "w", "main", "main", wrong), 60)
    assert "authentication failed" in str(info.value).lower()
    assert_no_secret(str(info.value), wrong)


async def test_missing_token_fails_fast_with_authentication_error(gitcli, git_server, tmp_path):
    url = git_server.make_repo("demo")
    with pytest.raises(GitAuthFailed, match="authentication failed"):
        await asyncio.wait_for(gitcli.clone(url, tmp_path / "w", "main", "main", None), 60)


async def test_token_never_lands_in_git_metadata(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    (work / "new.txt").write_text("new\n")
    await gitcli.commit(work, "add new", AUTHOR)
    await gitcli.push(work, "main", git_server.token)
    assert "extraheader" not in (work / ".git" / "config").read_text().lower()
    assert_no_secret(all_git_metadata(work), git_server.token)


async def test_token_in_url_userinfo_is_moved_out_of_the_url(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    url = git_server.url_for("demo").replace("http://", f"http://x:{git_server.token}@")
    await gitcli.clone(url, tmp_path / "w", "main", "main", None)
    config = (tmp_path / "w" / ".git" / "config").read_text()
    assert git_server.url_for("demo") in config
    assert_no_secret(all_git_metadata(tmp_path / "w"), git_server.token)


async def test_push_refused_for_read_only_token_is_scrubbed_auth_error(
    gitcli, git_server, tmp_path
):
    git_server.make_repo("demo")
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    (work / "x.txt").write_text("x\n")
    await gitcli.commit(work, "x", AUTHOR)
    with pytest.raises(GitAuthFailed) as info:
        await gitcli.push(work, "main", git_server.read_only_token)
    assert_no_secret(str(info.value), git_server.read_only_token)
    assert git_server.head("demo") != git("rev-parse", "HEAD", cwd=work).strip()


async def test_a_stalled_remote_hits_the_timeout_instead_of_hanging(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    port = listener.getsockname()[1]
    try:
        # The remote never answers: only GitCLI's own 1 s timeout can end the clone.
        with pytest.raises(GitError, match="timed out"):
            await asyncio.wait_for(
                GitCLI(timeout=1).clone(
                    f"http://127.0.0.1:{port}/x.git", tmp_path / "w", "main", "main", "token-1234"
                ),
                60,
            )
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


async def test_file_url_clone(gitcli, git_server, tmp_path):
    git_server.make_repo("local", {"f.txt": "file\n"})
    url = git_server.bare_path("local").as_uri()
    sha = await gitcli.clone(url, tmp_path / "w", "main", "main", None)
    assert sha == git_server.head("local")
    assert (tmp_path / "w" / "f.txt").read_text() == "file\n"


async def test_empty_repository_clone_then_first_push_creates_the_branch(
    gitcli, git_server, tmp_path
):
    git_server.make_empty_repo("empty")
    work = tmp_path / "w"
    assert await clone(gitcli, git_server, "empty", work) == ""
    (work / "first.txt").write_text("first\n")
    assert await gitcli.changed_files(work) == [_change("first.txt", "added")]
    sha = await gitcli.commit(work, "first", AUTHOR)
    assert await gitcli.push(work, "main", git_server.token) == sha
    assert git_server.head("empty", "main") == sha


# ------------------------------------------------------------- changed files


def _change(path: str, change: str, old_path: str | None = None):
    from rdev.domain.models import FileChange

    return FileChange(path=path, change=change, old_path=old_path)


async def test_changed_files_reports_added_modified_deleted_renamed(gitcli, git_server, tmp_path):
    long_text = "".join(f"line {i}\n" for i in range(50))
    git_server.make_repo("demo", {"keep.txt": "a\n", "gone.txt": "b\n", "old/name.txt": long_text})
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    (work / "keep.txt").write_text("changed\n")
    (work / "gone.txt").unlink()
    (work / "new").mkdir()
    (work / "old" / "name.txt").rename(work / "new" / "name.txt")
    (work / "added.txt").write_text("c\n")

    changes = await gitcli.changed_files(work)

    assert sorted(changes, key=lambda c: c.path) == [
        _change("added.txt", "added"),
        _change("gone.txt", "deleted"),
        _change("keep.txt", "modified"),
        _change("new/name.txt", "renamed", "old/name.txt"),
    ]
    # The checkout's own index is left alone: nothing was staged.
    assert git("diff", "--cached", "--name-only", cwd=work) == ""


async def test_same_size_edit_in_the_clones_second_is_still_reported(gitcli, git_server, tmp_path):
    """Regression: a private index copy with a fresh mtime made git trust stale stat data,
    so an in-place, same-size rewrite within the clone's second was silently dropped."""
    git_server.make_repo("demo", {"stamp.txt": "0000000000\n"})
    for attempt in range(10):
        work = tmp_path / f"w{attempt}"
        await clone(gitcli, git_server, "demo", work)
        index_second = int((work / ".git" / "index").stat().st_mtime)
        (work / "stamp.txt").write_text("1111111111\n")  # same size, same second (usually)
        if int((work / "stamp.txt").stat().st_mtime) == index_second:
            break
    else:
        pytest.skip("could not rewrite the file within the clone's second")
    await asyncio.sleep(1.2)  # the racy-git window has passed

    changes = await gitcli.changed_files(work)

    assert changes == [_change("stamp.txt", "modified")]


async def test_changed_files_honours_exclude_like_commit(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    (work / ".claude").mkdir()
    (work / ".claude" / "settings.json").write_text("{}")
    (work / "real.txt").write_text("r\n")
    changes = await gitcli.changed_files(work, exclude=[".claude/"])
    assert changes == [_change("real.txt", "added")]


# --------------------------------------------------------------------- commit


async def test_commit_excludes_untracked_agent_dirs_but_includes_tracked_ones(
    gitcli, git_server, tmp_path
):
    git_server.make_repo("demo", {"README.md": "r\n", ".opencode/config.json": "{}\n"})
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    for rel in (".claude/settings.json", "sub/.claude/cache", ".opencode/new-state.json"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("agent\n")
    (work / ".opencode" / "config.json").write_text('{"tracked": true}\n')
    (work / "src").mkdir()
    (work / "src" / "app.py").write_text("print('hi')\n")

    sha = await gitcli.commit(work, "work", AUTHOR, exclude=[".claude/", ".opencode/"])

    files = git("show", "--name-status", "--format=", sha, cwd=work).split("\n")
    assert sorted(f for f in files if f) == ["A\tsrc/app.py", "M\t.opencode/config.json"]
    # The excluded files stay in the working tree, just uncommitted.
    assert (work / ".claude" / "settings.json").exists()


async def test_commit_returns_none_when_nothing_changed(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    (work / ".claude").mkdir()
    (work / ".claude" / "x").write_text("only agent noise\n")
    assert await gitcli.commit(work, "nothing", AUTHOR, exclude=[".claude"]) is None


async def test_commit_sets_author_and_keeps_message_verbatim(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    (work / "x.txt").write_text("x\n")
    message = commit_message("Fix the thing\n\n# not a comment\nmore detail", "b-123")
    sha = await gitcli.commit(work, message, AUTHOR)
    assert git("log", "-1", "--format=%an <%ae>|%cn", sha, cwd=work).strip() == (
        "Build Bot <bot@example.invalid>|Build Bot"
    )
    body = git("log", "-1", "--format=%B", sha, cwd=work)
    assert "# not a comment" in body
    assert git(
        "log", "-1", "--format=%(trailers:key=Build-Id,valueonly)", sha, cwd=work
    ).strip() == ("b-123")


async def test_commit_does_not_run_hooks_planted_in_the_checkout(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    hook = work / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho hook ran > hook-ran\nexit 1\n")
    hook.chmod(0o755)
    (work / "x.txt").write_text("x\n")
    assert await gitcli.commit(work, "x", AUTHOR)
    assert not (work / "hook-ran").exists()


def test_commit_message_subject_body_and_trailer():
    prompt = "Add a login page with " + "very " * 30 + "nice styling\nand more detail"
    message = commit_message(prompt, "build-42")
    subject, *_ = message.split("\n")
    assert len(subject) <= 72 and subject.startswith("Add a login page")
    assert message.rstrip().endswith("\n\nBuild-Id: build-42")
    assert "and more detail" in message
    assert commit_message("", "b1").startswith("rdev build b1\n")
    assert commit_message("short one", "b1") == "short one\n\nBuild-Id: b1\n"


# ----------------------------------------------------------------------- push


async def test_push_creates_a_new_branch_from_the_default_branch(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    main_before = git_server.head("demo", "main")
    work = tmp_path / "w"
    sha = await gitcli.clone(
        git_server.url_for("demo"), work, "rdev/feature", "main", git_server.token
    )
    assert sha == main_before
    (work / "feature.txt").write_text("f\n")
    new = await gitcli.commit(work, "feature", AUTHOR)
    assert await gitcli.push(work, "rdev/feature", git_server.token) == new
    assert git_server.head("demo", "rdev/feature") == new
    assert git_server.head("demo", "main") == main_before


async def test_push_rebases_onto_a_remote_that_moved(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    theirs = git_server.commit("demo", {"theirs.txt": "t\n"}, message="theirs")
    (work / "ours.txt").write_text("o\n")
    await gitcli.commit(work, "ours", AUTHOR)

    pushed = await gitcli.push(work, "main", git_server.token)

    assert git_server.head("demo") == pushed
    assert git_server.log("demo")[:2] == ["ours", "theirs"]
    assert git("rev-parse", f"{pushed}^", cwd=git_server.bare_path("demo")).strip() == theirs


async def test_concurrent_pushes_to_one_branch_both_land(gitcli, git_server, tmp_path):
    git_server.make_repo("demo")
    works = [tmp_path / "a", tmp_path / "b"]
    for i, work in enumerate(works):
        await clone(gitcli, git_server, "demo", work)
        (work / f"file{i}.txt").write_text(f"{i}\n")
        await gitcli.commit(work, f"commit {i}", AUTHOR)

    await asyncio.gather(*(gitcli.push(w, "main", git_server.token) for w in works))

    check = git_server.clone_back("demo", tmp_path / "check")
    assert (check / "file0.txt").exists() and (check / "file1.txt").exists()
    assert sorted(git_server.log("demo")[:2]) == ["commit 0", "commit 1"]
    # One push had to be retried: 2 pushes x 2 write requests, plus at least one retry.
    assert len([r for r in git_server.requests if r[2]]) >= 6


async def test_rebase_conflict_raises_push_rejected_and_leaves_no_rebase_behind(
    gitcli, git_server, tmp_path
):
    git_server.make_repo("demo", {"shared.txt": "base\n"})
    work = tmp_path / "w"
    await clone(gitcli, git_server, "demo", work)
    remote_tip = git_server.commit("demo", {"shared.txt": "theirs\n"})
    (work / "shared.txt").write_text("ours\n")
    ours = await gitcli.commit(work, "ours", AUTHOR)

    with pytest.raises(PushRejected, match="conflict") as info:
        await gitcli.push(work, "main", git_server.token)

    assert "shared.txt" in str(info.value)
    assert git_server.head("demo") == remote_tip
    assert git("rev-parse", "HEAD", cwd=work).strip() == ours
    assert not (work / ".git" / "rebase-merge").exists()
    assert not (work / ".git" / "rebase-apply").exists()


# ---------------------------------------------------------- environment, ssh


async def test_git_runs_without_inherited_git_settings_or_prompts(
    gitcli, git_server, tmp_path, monkeypatch
):
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("GIT_TRACE_CURL", str(trace))
    monkeypatch.setenv("GIT_TRACE_REDACT", "0")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    git_server.make_repo("demo")
    await clone(gitcli, git_server, "demo", tmp_path / "w")
    assert not trace.exists()  # a trace would have logged the Authorization header
    env = gitcli.runner.environment()
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert "BatchMode=yes" in env["GIT_SSH_COMMAND"]


async def test_ssh_remote_fails_fast_instead_of_prompting(gitcli, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(GitError) as info:  # not a prompt waiting on the clone's timeout
        await asyncio.wait_for(
            gitcli.clone(f"ssh://git@127.0.0.1:{port}/x.git", tmp_path / "w", "main", "main", None),
            60,
        )
    assert "timed out" not in str(info.value)
