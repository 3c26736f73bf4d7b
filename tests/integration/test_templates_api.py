"""GET /templates, and builds that use a template: rendered prompt stored, bad variables and
sandbox escapes refused with 422 through the API (both backends)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rdev.bootstrap import Container
from rdev.config import Settings
from tests.conftest import make_token
from tests.factories import create_project, submit


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    d = tmp_path / "templates"
    d.mkdir()
    return d


@pytest.fixture
def settings(settings: Settings, templates_dir: Path) -> Settings:
    return settings.model_copy(update={"templates_dir": templates_dir})


def add_template(root: Path, name: str, manifest: str, prompt: str | None = None) -> None:
    folder = root / name
    folder.mkdir()
    (folder / "template.toml").write_text(f'name = "{name}"\nversion = "2.1.0"\n{manifest}')
    if prompt is not None:
        (folder / "prompt.j2").write_text(prompt)


async def test_list_templates_shows_the_builtins_with_their_variables(client: httpx.AsyncClient):
    r = await client.get("/templates")

    assert r.status_code == 200, r.text
    by_name = {t["name"]: t for t in r.json()}
    assert {"blank", "python-service", "static-site"} <= set(by_name)
    service = by_name["python-service"]
    assert service["version"] == "1.0.0"
    assert service["has_scaffold"] is True and service["has_prompt_template"] is True
    port = next(v for v in service["variables"] if v["name"] == "port")
    assert port == {
        "name": "port",
        "type": "integer",
        "required": False,
        "default": 8000,
        "description": port["description"],
    }
    assert by_name["blank"]["has_prompt_template"] is False


async def test_get_template_shows_its_prompt_template_and_unknown_is_404(
    client: httpx.AsyncClient,
):
    r = await client.get("/templates/python-service")
    assert r.status_code == 200, r.text
    assert "{{ prompt }}" in r.json()["prompt_template"]

    missing = await client.get("/templates/no-such-template")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_templates_need_a_read_scope(container: Container, client: httpx.AsyncClient):
    reader = await make_token(container, ["builds:read"])
    worker = await make_token(container, ["workers:run"])

    assert (await client.get("/templates", headers=reader)).status_code == 200
    assert (await client.get("/templates", headers=worker)).status_code == 403
    assert (await client.get("/templates", headers={"Authorization": ""})).status_code == 401


async def test_a_template_in_the_configured_folder_is_listed_and_overrides_a_builtin(
    client: httpx.AsyncClient, templates_dir: Path
):
    add_template(templates_dir, "blank", 'description = "ours"\n')

    r = await client.get("/templates/blank")

    assert r.json()["description"] == "ours"
    assert r.json()["version"] == "2.1.0"


async def test_build_with_template_stores_rendered_prompt_and_template_version(
    client: httpx.AsyncClient,
):
    project = await create_project(client)
    accepted = await submit(
        client,
        project["id"],
        prompt="add a /time endpoint",
        template="python-service",
        variables={"service_name": "clock", "port": 9100},
    )

    build = (await client.get(f"/builds/{accepted['task_id']}")).json()

    assert build["template"] == {"name": "python-service", "version": "1.0.0"}
    assert "You are working on clock" in build["rendered_prompt"]
    assert f"repository {project['name']}" in build["rendered_prompt"]
    assert "port 9100" in build["rendered_prompt"]
    assert build["rendered_prompt"].rstrip().endswith("add a /time endpoint")
    assert build["spec"]["prompt"] == "add a /time endpoint"


@pytest.mark.parametrize(
    ("variables", "field", "words"),
    [
        ({"colour": "red"}, "variables.colour", "unknown variable 'colour'"),
        ({"port": "80"}, "variables.port", "must be of type integer"),
        ({"port": True}, "variables.port", "must be of type integer"),
        ({}, "variables.owner", "'owner' is required"),
    ],
)
async def test_bad_template_variables_are_422_naming_the_variable(
    client: httpx.AsyncClient,
    templates_dir: Path,
    variables: dict[str, object],
    field: str,
    words: str,
):
    add_template(
        templates_dir,
        "svc",
        '[variables.owner]\ntype = "string"\nrequired = true\n'
        '[variables.port]\ntype = "integer"\ndefault = 1\n',
        "{{ owner }}: {{ prompt }}",
    )
    if "owner" not in variables and field != "variables.owner":
        variables = {"owner": "me", **variables}
    project = await create_project(client)

    r = await client.post(
        f"/projects/{project['id']}/builds",
        json={"prompt": "x", "agent": "command", "template": "svc", "variables": variables},
    )

    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert words in r.json()["detail"]
    builds = (await client.get(f"/projects/{project['id']}/builds")).json()
    assert builds["items"] == []


@pytest.mark.parametrize(
    "prompt_template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{% include '/etc/passwd' %}",
        "{{ '/etc/passwd' | read_file }}",
        "{{ prompt.__class__.__subclasses__() }}",
    ],
)
async def test_template_sandbox_escapes_are_refused_with_422(
    client: httpx.AsyncClient, templates_dir: Path, prompt_template: str
):
    add_template(templates_dir, "evil", "", prompt_template)
    project = await create_project(client)

    r = await client.post(
        f"/projects/{project['id']}/builds",
        json={"prompt": "x", "agent": "command", "template": "evil"},
    )

    assert r.status_code == 422, r.text
    assert r.json()["field"] == "template"
    assert "root:" not in r.text  # nothing of /etc/passwd leaked into the answer


async def test_variable_values_are_data_not_template_code(
    client: httpx.AsyncClient, templates_dir: Path
):
    add_template(
        templates_dir, "echo", '[variables.v]\ntype = "string"\n', "[{{ v }}] {{ prompt }}"
    )
    project = await create_project(client)
    accepted = await submit(
        client, project["id"], prompt="{{ 7 * 7 }}", template="echo", variables={"v": "{{ 6*6 }}"}
    )

    build = (await client.get(f"/builds/{accepted['task_id']}")).json()

    assert build["rendered_prompt"] == "[{{ 6*6 }}] {{ 7 * 7 }}"
