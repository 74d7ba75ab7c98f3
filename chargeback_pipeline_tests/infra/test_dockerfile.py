"""The Dagster image's Dockerfile, read as data (no Docker engine runs here): a base pinned by
version and digest, non-root, a health check, only what the image needs in the build context, and
the same command, port and module as the Bicep code-location app."""

from __future__ import annotations

import ast
import re
import shlex
from functools import cache
from pathlib import Path

import pytest
import yaml

from chargeback_pipeline_tests.infra import iac

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@cache
def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    """Instructions grouped by FROM, each group starting with its FROM."""
    grouped: list[list[tuple[str, str]]] = []
    for item in instructions():
        if item[0] == "FROM":
            grouped.append([])
        grouped[-1].append(item)
    return grouped


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array instruction argument (CMD ["a", "b"]) as a list."""
    return list(yaml.safe_load(arguments))


def test_the_base_image_is_pinned_by_release_and_digest() -> None:
    aliases: set[str] = set()
    external = []
    for stage in stages():
        words = stage[0][1].split()
        image = words[0]
        if image in aliases:
            continue
        external.append(image)
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2])
    assert len(external) == 1, f"one external base, every other stage built on it: {external}"
    (image,) = external
    match = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-\w+@sha256:[0-9a-f]{64}", image)
    assert match, f"{image}: needs an exact python version tag and a digest"
    assert match.group(1).startswith("3.12.")
    assert "latest" not in image


def test_the_final_stage_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "no USER in the final stage"
    assert users[-1].split(":")[0] not in {"root", "0"}
    # The user exists: created in the final stage before it is used.
    assert any(k == "RUN" and "useradd" in a and users[-1] in a for k, a in final_stage())


def test_the_default_command_is_the_code_location_with_a_health_check() -> None:
    final = dict(final_stage())
    command = exec_form(final["CMD"])
    assert command[:3] == ["dagster", "code-server", "start"]
    assert command[command.index("-p") + 1] == "4000"
    assert command[command.index("-m") + 1] == "chargeback_pipeline.definitions"
    assert final["EXPOSE"] == "4000"
    health = final["HEALTHCHECK"]
    assert exec_form(health.split(" CMD ", 1)[1]) == [
        "dagster",
        "api",
        "grpc-health-check",
        "-p",
        "4000",
    ]


def test_the_bicep_code_app_runs_the_same_module_on_the_same_port() -> None:
    spec = iac.resources(iac.bicep_module("dagster"), "Microsoft.App/containerApps")["codeApp"]
    body = spec["config"]
    body = body.get("config", body) if "condition" in body else body  # `= if (...)` nests once
    container = body["properties"]["template"]["containers"][0]
    assert container["command"] == exec_form(dict(final_stage())["CMD"])
    assert body["properties"]["configuration"]["ingress"]["targetPort"] == 4000


def test_dependencies_come_from_the_deploy_extra_without_a_cache() -> None:
    runs = [args for keyword, args in instructions() if keyword == "RUN" and "pip install" in args]
    assert runs, "nothing is installed"
    for args in runs:
        assert "--no-cache-dir" in args
    assert any('".[deploy]"' in args for args in runs), "the deploy extra adds dagster-postgres"


def test_the_final_stage_copies_only_the_venv_the_package_and_the_sql() -> None:
    copied = []
    for keyword, args in final_stage():
        if keyword == "COPY":
            words = shlex.split(args)
            copied.extend(w for w in words[:-1] if not w.startswith("--"))
    assert set(copied) == {
        "/opt/venv",
        "/opt/dagster/app/chargeback_pipeline",
        "/opt/dagster/app/setup.py",
        "/opt/dagster/app/pyproject.toml",
        "dbt_like_sql",
    }


def written_yaml(target: str) -> object:
    """The YAML a `printf '%s\\n' 'line' ... >target` in the Dockerfile writes, parsed."""
    (run,) = [args for keyword, args in instructions() if keyword == "RUN" and target in args]
    for chunk in run.split("printf '%s\\n'")[1:]:
        body, _, rest = chunk.partition(">")
        if rest.lstrip('"').startswith(target):
            return yaml.safe_load("\n".join(re.findall(r"'([^']*)'", body)))
    raise AssertionError(f"no printf writes {target}")


def test_the_image_configures_a_postgres_instance_and_the_grpc_workspace() -> None:
    instance = written_yaml("$DAGSTER_HOME/dagster.yaml")
    assert isinstance(instance, dict)
    database = instance["storage"]["postgres"]["postgres_db"]
    assert database["hostname"] == {"env": "DAGSTER_PG_HOST"}
    assert database["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert database["params"] == {"sslmode": "require"}
    assert instance["telemetry"] == {"enabled": False}
    workspace = written_yaml("/opt/dagster/app/workspace.yaml")
    assert isinstance(workspace, dict)
    (server,) = workspace["load_from"]
    assert server["grpc_server"]["host"] == {"env": "DAGSTER_CODE_LOCATION_HOST"}
    # The webserver and daemon read these paths (dagster.bicep).
    dagster = (iac.BICEP / "modules" / "dagster.bicep").read_text()
    assert "'/opt/dagster/app/workspace.yaml'" in dagster
    assert "'/opt/dagster/dagster_home'" in dagster


def dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last matching pattern decides,
    and a pattern that matches a parent folder matches everything in it."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        parts = path.split("/")
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    translated = re.escape(pattern)
    translated = translated.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
    translated = translated.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.compile(translated)


def context_sources() -> list[str]:
    """Sources of COPY instructions that read the build context (not another stage)."""
    sources = []
    for keyword, args in instructions():
        words = shlex.split(args)
        if keyword in {"COPY", "ADD"} and not any(w.startswith("--from") for w in words):
            sources.extend(w for w in words[:-1] if not w.startswith("--"))
    return sources


@pytest.mark.parametrize("source", context_sources())
def test_every_copy_source_exists_and_is_in_the_build_context(source: str) -> None:
    path = ROOT / source
    assert path.exists(), f"COPY {source}: no such file in the repository"
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    kept = [p for p in files if not dockerignore_excludes(str(p.relative_to(ROOT)))]
    assert kept, f"COPY {source}: .dockerignore leaves it out of the build context"
    if path.is_dir():
        assert any(p.suffix in {".py", ".sql"} for p in kept)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv-checkov/bin/checkov",
        ".chargeback/lake/usage_events/part-0.parquet",
        "node_modules/azurite/package.json",
        "chargeback_pipeline_tests/conftest.py",
        ".git/HEAD",
        "infra/function_app/local.settings.json",
        "chargeback_pipeline/__pycache__/cli.cpython-312.pyc",
        "Dockerfile",
    ],
)
def test_local_state_and_tests_stay_out_of_the_build_context(path: str) -> None:
    assert dockerignore_excludes(path)


def test_the_ignore_rules_keep_what_the_image_needs() -> None:
    for path in ("setup.py", "chargeback_pipeline/cli.py", "dbt_like_sql/models.yml"):
        assert not dockerignore_excludes(path), path


def test_setup_declares_the_deploy_extra_the_image_installs() -> None:
    # pip only warns about an unknown extra, so a missing one would ship an image without
    # dagster-postgres that fails at start against the PostgreSQL instance.
    tree = ast.parse((ROOT / "setup.py").read_text())
    (extras,) = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "extras_require"
    ]
    declared = ast.literal_eval(extras)
    assert "dagster-postgres==0.29.27" in declared.get("deploy", [])
