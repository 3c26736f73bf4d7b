"""Scaffolding: files copied and rendered into the destination, and nothing ever outside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rdev.adapters.templates import FolderTemplateProvider
from rdev.domain.errors import ValidationFailed

PROJECT = {"name": "demo", "repo_url": "http://127.0.0.1/demo.git", "default_branch": "main"}


def template_with_scaffold(root: Path, variables: str = "") -> Path:
    """A template "t" under ``root``; returns its (empty) scaffold folder to fill."""
    folder = root / "t"
    (folder / "scaffold").mkdir(parents=True)
    (folder / "template.toml").write_text(f'name = "t"\nversion = "1"\n{variables}')
    return folder / "scaffold"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(templates root, destination, a sibling 'outside' dir that must stay empty)."""
    root, dest, outside = tmp_path / "templates", tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    return root, dest, outside


def written(dest: Path) -> list[str]:
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) if dest.exists() else []


def test_files_are_copied_and_j2_files_rendered_without_suffix(dirs):
    root, dest, _ = dirs
    sc = template_with_scaffold(root, '[variables.who]\ntype = "string"\ndefault = "world"\n')
    (sc / "pkg").mkdir()
    (sc / "pkg" / "hello.txt.j2").write_text("hello {{ who }} from {{ project.name }}\n")
    (sc / "raw.txt").write_text("{{ not rendered }}\n")
    (sc / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (sc / "run.sh").chmod(0o755)
    (sc / "dot-gitignore").write_text("dist/\n")
    (sc / "__pycache__").mkdir()
    (sc / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (sc / "{{ who }}.md").write_text("named by a variable\n")

    FolderTemplateProvider([root]).scaffold("t", dest, {"who": "bob"}, PROJECT)

    assert written(dest) == [".gitignore", "bob.md", "pkg", "pkg/hello.txt", "raw.txt", "run.sh"]
    assert (dest / "pkg" / "hello.txt").read_text() == "hello bob from demo\n"
    assert (dest / "raw.txt").read_text() == "{{ not rendered }}\n"
    assert (dest / "run.sh").stat().st_mode & stat.S_IXUSR


def test_scaffold_validates_variables_first(dirs):
    root, dest, _ = dirs
    template_with_scaffold(root, '[variables.port]\ntype = "integer"\nrequired = true\n')
    with pytest.raises(ValidationFailed) as err:
        FolderTemplateProvider([root]).scaffold("t", dest, {"port": "80"}, PROJECT)
    assert err.value.field == "variables.port"


@pytest.mark.parametrize("value", ["../x", "../../outside/x", "a/../../x", "/ABS/x", "..", "."])
def test_file_name_rendered_to_an_escaping_path_is_refused(dirs, value: str):
    root, dest, outside = dirs
    value = value.replace("/ABS", str(outside))
    sc = template_with_scaffold(root, '[variables.name]\ntype = "string"\n')
    (sc / "a-first-file.txt").write_text("x")
    (sc / "{{ name }}").write_text("pwned\n")

    with pytest.raises(ValidationFailed) as err:
        FolderTemplateProvider([root]).scaffold("t", dest, {"name": value}, PROJECT)

    assert "refused" in err.value.detail
    assert written(outside) == []
    assert written(dest) == []  # everything is checked before anything is written
    assert not (dest.parent / "x").exists()


def test_symlink_in_scaffold_pointing_outside_is_refused(dirs):
    root, dest, outside = dirs
    sc = template_with_scaffold(root)
    (outside / "secret.txt").write_text("s3cret")
    os.symlink(os.path.relpath(outside / "secret.txt", sc), sc / "leak.txt")

    with pytest.raises(ValidationFailed) as err:
        FolderTemplateProvider([root]).scaffold("t", dest, {}, PROJECT)

    assert "outside" in err.value.detail and "leak.txt" in err.value.detail
    assert written(dest) == []


def test_absolute_symlink_in_scaffold_is_refused(dirs):
    root, dest, outside = dirs
    sc = template_with_scaffold(root)
    os.symlink(outside, sc / "dir-link")

    with pytest.raises(ValidationFailed) as err:
        FolderTemplateProvider([root]).scaffold("t", dest, {}, PROJECT)
    assert "absolute" in err.value.detail


def test_symlink_inside_the_scaffold_is_kept_as_a_relative_link(dirs):
    root, dest, _ = dirs
    sc = template_with_scaffold(root)
    (sc / "docs").mkdir()
    (sc / "docs" / "index.md").write_text("hi\n")
    os.symlink("docs/index.md", sc / "README.md")

    FolderTemplateProvider([root]).scaffold("t", dest, {}, PROJECT)

    assert os.readlink(dest / "README.md") == "docs/index.md"
    assert (dest / "README.md").read_text() == "hi\n"


def test_existing_symlink_in_destination_cannot_redirect_writes(dirs):
    root, dest, outside = dirs
    sc = template_with_scaffold(root)
    (sc / "sub").mkdir()
    (sc / "sub" / "file.txt").write_text("x")
    dest.mkdir()
    os.symlink(outside, dest / "sub")  # e.g. planted in an existing checkout

    with pytest.raises(ValidationFailed):
        FolderTemplateProvider([root]).scaffold("t", dest, {}, PROJECT)
    assert written(outside) == []


def test_sandbox_applies_to_scaffold_files(dirs):
    root, dest, _ = dirs
    sc = template_with_scaffold(root)
    (sc / "evil.txt.j2").write_text("{{ cycler.__init__.__globals__.os.environ }}")

    with pytest.raises(ValidationFailed) as err:
        FolderTemplateProvider([root]).scaffold("t", dest, {}, PROJECT)
    assert "unsafe" in err.value.detail


def test_template_without_scaffold_only_creates_dest(dirs):
    root, dest, _ = dirs
    (root / "bare").mkdir(parents=True)
    (root / "bare" / "template.toml").write_text('name = "bare"\n')

    FolderTemplateProvider([root]).scaffold("bare", dest, {}, PROJECT)

    assert dest.is_dir() and written(dest) == []


def test_two_files_mapping_to_one_path_are_refused(dirs):
    root, dest, _ = dirs
    sc = template_with_scaffold(root)
    (sc / "a.txt").write_text("plain")
    (sc / "a.txt.j2").write_text("rendered")

    with pytest.raises(ValidationFailed) as err:
        FolderTemplateProvider([root]).scaffold("t", dest, {}, PROJECT)
    assert "same path" in err.value.detail
