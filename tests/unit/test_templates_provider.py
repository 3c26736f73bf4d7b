"""FolderTemplateProvider: discovery, variables, prompt rendering and the Jinja sandbox."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rdev.adapters.templates import FolderTemplateProvider, builtin_templates_dir
from rdev.domain.errors import NotFound, ValidationFailed

PROJECT = {"name": "demo", "repo_url": "http://127.0.0.1/demo.git", "default_branch": "main"}


def make_template(root: Path, folder: str, manifest: str, prompt_j2: str | None = None) -> Path:
    d = root / folder
    d.mkdir(parents=True)
    (d / "template.toml").write_text(textwrap.dedent(manifest))
    if prompt_j2 is not None:
        (d / "prompt.j2").write_text(prompt_j2)
    return d


@pytest.fixture
def custom(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    make_template(
        root,
        "svc",
        """
        name = "svc"
        description = "a service"
        version = "2.1"

        [variables.service_name]
        type = "string"
        required = true

        [variables.port]
        type = "integer"
        default = 8080

        [variables.debug]
        type = "boolean"
        default = false

        [variables.tags]
        type = "array"
        default = []
        """,
        "Service {{ service_name }} on {{ variables.port }} (debug={{ debug }}) "
        "in {{ project.name }}@{{ project.default_branch }}: {{ prompt }}",
    )
    return root


def provider(*dirs: Path) -> FolderTemplateProvider:
    return FolderTemplateProvider([builtin_templates_dir(), *dirs])


def render_with(tmp_path: Path, source: str, **variables: object) -> str:
    root = tmp_path / "t"
    make_template(root, "x", 'name = "x"\nversion = "1"\n', source)
    return provider(root).render_prompt("x", "the task", dict(variables), PROJECT).prompt


def test_builtin_templates_are_listed_with_their_variables():
    templates = {t.name: t for t in provider().list()}

    assert {"blank", "python-service", "static-site"} <= set(templates)
    svc = templates["python-service"]
    assert {v.name: (v.type, v.default) for v in svc.variables} == {
        "service_name": ("string", "service"),
        "port": ("integer", 8000),
    }
    assert svc.scaffold_dir is not None and svc.prompt_template


def test_configured_folder_overrides_builtin_of_the_same_name(tmp_path: Path):
    make_template(tmp_path, "my-blank", 'name = "blank"\nversion = "9.9"\ndescription = "mine"\n')

    blank = provider(tmp_path).get("blank")

    assert (blank.version, blank.description) == ("9.9", "mine")
    assert [t.name for t in provider(tmp_path).list()].count("blank") == 1


def test_unknown_template_is_not_found():
    with pytest.raises(NotFound):
        provider().get("no-such-template")
    with pytest.raises(NotFound):
        provider().get("../blank")


def test_broken_manifest_is_skipped_not_fatal(tmp_path: Path):
    make_template(tmp_path, "broken", "name = [unclosed\n")
    make_template(tmp_path, "bad-type", 'name = "bad-type"\n[variables.x]\ntype = "color"\n')

    names = [t.name for t in provider(tmp_path).list()]

    assert "blank" in names and "broken" not in names and "bad-type" not in names


def test_render_fills_variables_defaults_prompt_and_project(custom: Path):
    rendered = provider(custom).render_prompt(
        "svc", "add a /time endpoint", {"service_name": "clock"}, PROJECT
    )

    assert rendered.prompt == (
        "Service clock on 8080 (debug=False) in demo@main: add a /time endpoint"
    )
    assert (rendered.template, rendered.version) == ("svc", "2.1")


def test_template_without_prompt_returns_the_prompt_unchanged():
    rendered = provider().render_prompt("blank", "just do it", {}, PROJECT)
    assert rendered.prompt == "just do it"
    assert rendered.template == "blank"


def test_variable_values_are_data_not_template_code(custom: Path):
    rendered = provider(custom).render_prompt(
        "svc", "{{ 7 * 7 }}", {"service_name": "{{ cycler.__init__ }}"}, PROJECT
    )
    assert "Service {{ cycler.__init__ }}" in rendered.prompt
    assert rendered.prompt.endswith(": {{ 7 * 7 }}")


def test_missing_required_variable_is_named(custom: Path):
    with pytest.raises(ValidationFailed) as err:
        provider(custom).render_prompt("svc", "p", {}, PROJECT)
    assert err.value.field == "variables.service_name"
    assert "service_name" in err.value.detail and err.value.status == 422


def test_unknown_variable_is_named(custom: Path):
    with pytest.raises(ValidationFailed) as err:
        provider(custom).render_prompt("svc", "p", {"service_name": "a", "colour": 1}, PROJECT)
    assert err.value.field == "variables.colour"
    assert "colour" in err.value.detail


@pytest.mark.parametrize(
    ("name", "value"),
    [("port", "8080"), ("port", True), ("port", 1.5), ("debug", 1), ("tags", "a,b")],
)
def test_wrongly_typed_variable_is_named(custom: Path, name: str, value: object):
    with pytest.raises(ValidationFailed) as err:
        provider(custom).render_prompt("svc", "p", {"service_name": "a", name: value}, PROJECT)
    assert err.value.field == f"variables.{name}"
    assert name in err.value.detail


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ prompt.__class__ }}",
        "{{ '{0.__class__.__mro__}'.format(prompt) }}",
        "{{ project.update({'name': 'x'}) }}",
    ],
)
def test_sandbox_escapes_are_refused(tmp_path: Path, source: str):
    with pytest.raises(ValidationFailed) as err:
        render_with(tmp_path, source)
    assert "unsafe" in err.value.detail


@pytest.mark.parametrize(
    "source",
    [
        "{{ lipsum.__globals__ }}",  # no lipsum global at all
        "{{ config }}",
        "{% include '/etc/passwd' %}",  # no loader: templates cannot read files
        "{% import '/etc/hosts' as h %}",
        "{{ 'a' * 10000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ 1 / 0 }}",
        "{{ unclosed",
        "{{ undefined_name }}",
    ],
)
def test_render_errors_and_missing_capabilities_are_validation_failures(
    tmp_path: Path, source: str
):
    with pytest.raises(ValidationFailed) as err:
        render_with(tmp_path, source)
    assert "x" in err.value.detail  # names the template
    assert "root:" not in err.value.detail  # no file content leaked


def test_harmless_jinja_features_still_work(tmp_path: Path):
    out = render_with(
        tmp_path,
        "{% for i in range(3) %}{{ i }}{% endfor %} {{ prompt | upper }} {{ 'ab' * 2 }}"
        " {{ dict(a=1)['a'] }} {{ '{}!'.format(prompt) }}",
    )
    assert out == "012 THE TASK abab 1 the task!"


def test_prompt_file_wins_over_manifest_prompt_key(tmp_path: Path):
    make_template(tmp_path, "p", 'name = "p"\nprompt = "from key"\n', "from file: {{ prompt }}")
    rendered = provider(tmp_path).render_prompt("p", "x", {}, PROJECT)
    assert rendered.prompt == "from file: x"
