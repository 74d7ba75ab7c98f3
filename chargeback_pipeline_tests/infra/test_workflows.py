""".github/workflows: they parse, run with least privilege, pin every action to a commit, name only
files, variables and secrets that exist, and deploy dev -> test -> prod. Plus the pure part of the
revision wait they call."""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.y*ml"))
ENVIRONMENTS = ("dev", "test", "prod")
ALLOWED_PERMISSIONS = {"contents": "read", "id-token": "write"}
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")
PATH_IN_RUN = re.compile(
    r"(?<![\w/$.-])((?:infra|chargeback_pipeline|dbt_like_sql|\.github)/[\w./-]+)"
)
CONTEXT_NAME = re.compile(r"\b(secrets|vars)\.([A-Za-z_][A-Za-z0-9_]*)")


@cache
def workflow(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path.name} is not a mapping"
    return doc


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    """The `on:` block; YAML 1.1 reads the bare key `on` as True."""
    value = doc.get("on", doc.get(True))
    return value if isinstance(value, dict) else {name: None for name in value}


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def named(path: str) -> dict[str, Any]:
    return workflow(WORKFLOWS / path)


def test_there_are_the_three_workflows() -> None:
    assert {p.name for p in WORKFLOW_FILES} == {
        "ci.yml",
        "deploy.yml",
        "deploy-environment.yml",
    }


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_job_runs_somewhere_with_least_privilege(path: Path) -> None:
    doc = workflow(path)
    assert doc["jobs"], f"{path.name} has no jobs"
    # Nothing is granted by default: the top level gives at most read access to the code.
    assert doc.get("permissions") in ({}, {"contents": "read"}), path.name
    for name, job in doc["jobs"].items():
        uses = job.get("uses")
        if uses:
            assert uses.startswith("./.github/workflows/"), f"{name}: only local reusable workflows"
            assert (ROOT / uses).is_file(), f"{name}: {uses} does not exist"
        else:
            assert job.get("runs-on"), f"{path.name}: job {name} has no runs-on"
            assert job.get("timeout-minutes"), f"{path.name}: job {name} has no timeout"
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{path.name}: job {name} must list its permissions"
        for scope, level in permissions.items():
            assert ALLOWED_PERMISSIONS.get(scope) == level, f"{name}: {scope}: {level}"
        if permissions.get("id-token") == "write":
            assert path.name.startswith("deploy"), f"{name}: OIDC tokens only for deployments"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    text = path.read_text()
    for step in steps(workflow(path)):
        uses = step.get("uses")
        if uses is None or uses.startswith("./"):
            continue
        assert PINNED.match(uses), f"{path.name}: {uses} is not pinned to a full commit SHA"
        line = re.search(rf"uses: {re.escape(uses)}(.*)$", text, flags=re.MULTILINE)
        assert line and re.fullmatch(r" # v\d+\.\d+\.\d+", line.group(1)), (
            f"{path.name}: {uses} needs its release as a `# vX.Y.Z` comment"
        )


def test_one_commit_per_action_across_workflows() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOW_FILES:
        for step in steps(workflow(path)):
            action, _, sha = step.get("uses", "./").partition("@")
            if sha:
                pins.setdefault(action, set()).add(sha)
    assert pins, "no action found"
    assert {action: shas for action, shas in pins.items() if len(shas) > 1} == {}


def referenced_paths(doc: dict[str, Any]) -> set[str]:
    """Repository paths named by run: scripts and by with: values."""
    found: set[str] = set()
    for step in steps(doc):
        found.update(PATH_IN_RUN.findall(step.get("run", "")))
        for value in (step.get("with") or {}).values():
            for line in str(value).splitlines():
                if re.fullmatch(r"[\w./-]+\.(?:py|sh|txt|json|toml|ya?ml|bicep|bicepparam)", line):
                    found.add(line)
    return found


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_script_and_file_a_step_names_exists(path: Path) -> None:
    doc = workflow(path)
    for relative in referenced_paths(doc):
        assert (ROOT / relative).exists(), f"{path.name} names {relative}, which does not exist"
    makefile = (ROOT / "Makefile").read_text()
    for step in steps(doc):
        for target in re.findall(r"\bmake (\w[\w-]*)", step.get("run", "")):
            assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), f"make {target}"


def test_the_paths_check_sees_the_scripts_the_deploy_steps_call() -> None:
    # Guards the regex above: a check that matched nothing would pass on any workflow.
    paths = referenced_paths(named("deploy-environment.yml"))
    assert {
        "infra/scripts/push_image.sh",
        "infra/scripts/deploy_bicep.sh",
        "infra/scripts/deployment_outputs.sh",
        "infra/scripts/wait_for_revisions.py",
        "infra/scripts/smoke_test.py",
        "infra/function_app/build.py",
        "infra/function_app/requirements.txt",
    } <= paths
    assert "infra/scripts/requirements-checkov.txt" in referenced_paths(named("ci.yml"))


def test_every_environment_has_its_bicep_parameters_and_the_script_uses_them() -> None:
    script = (ROOT / "infra" / "scripts" / "deploy_bicep.sh").read_text()
    assert '"$BICEP/parameters/$environment.bicepparam"' in script
    assert '"$BICEP/main.bicep"' in script
    for environment in ENVIRONMENTS:
        assert (ROOT / "infra" / "bicep" / "parameters" / f"{environment}.bicepparam").is_file()


def documented_names() -> dict[str, str]:
    """{name: 'variable' | 'secret'} from the table in infra/README.md, section Pipelines."""
    readme = (ROOT / "infra" / "README.md").read_text()
    section = readme.split("\n## Pipelines\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| (variable|secret) \|", section, flags=re.MULTILINE)
    return dict(rows)


def test_every_variable_and_secret_used_is_documented_and_vice_versa() -> None:
    used: dict[str, str] = {}
    for path in WORKFLOW_FILES:
        for kind, name in CONTEXT_NAME.findall(path.read_text()):
            used[name] = "secret" if kind == "secrets" else "variable"
    documented = documented_names()
    assert used, "no vars./secrets. found: the scan is broken"
    assert used == documented


def test_deploy_runs_checks_then_dev_then_test_then_prod() -> None:
    doc = named("deploy.yml")
    assert set(triggers(doc)) == {"push", "workflow_dispatch"}
    assert triggers(doc)["push"] == {"branches": ["main"]}
    jobs = doc["jobs"]
    assert jobs["checks"]["uses"] == "./.github/workflows/ci.yml"
    previous = "checks"
    for environment in ENVIRONMENTS:
        job = jobs[environment]
        assert job["needs"] == previous, f"{environment} must wait for {previous}"
        assert job["uses"] == "./.github/workflows/deploy-environment.yml"
        assert job["with"] == {"environment": environment}
        previous = environment
    # A newer push waits for the running deployment instead of cancelling it half-way.
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_each_stage_runs_in_its_github_environment_and_signs_in_with_oidc() -> None:
    doc = named("deploy-environment.yml")
    assert set(triggers(doc)) == {"workflow_call"}
    (job,) = doc["jobs"].values()
    # The environment gates the job (reviewers on test and prod) and is the OIDC subject.
    assert job["environment"] == "${{ inputs.environment }}"
    assert job["permissions"]["id-token"] == "write"
    (login,) = [s for s in job["steps"] if s.get("uses", "").startswith("azure/login@")]
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert not re.search(r"creds|client-secret|password", str(login["with"]), flags=re.I)
    secrets = {name for kind, name in CONTEXT_NAME.findall(str(job)) if kind == "secrets"}
    assert secrets == {"CHARGEBACK_PG_PASSWORD"}


def test_deploy_steps_come_in_order() -> None:
    (job,) = named("deploy-environment.yml")["jobs"].values()
    names = [step.get("name", "") for step in job["steps"]]
    order = [
        "Sign in to Azure (OIDC)",
        "Build and push the Dagster image",
        "Bicep what-if",
        "Bicep deploy",
        "Read the deployment outputs",
        "Wait for the new Container Apps revisions",
        "Publish the forwarding Function",
        "Smoke test through APIM into Blob",
    ]
    assert [n for n in names if n in order] == order


def test_no_run_step_expands_an_expression_inside_the_script() -> None:
    # Values reach scripts through env:, so a crafted value cannot become shell code.
    for path in WORKFLOW_FILES:
        for step in steps(workflow(path)):
            assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name')}"


def test_ci_runs_the_readme_test_command() -> None:
    doc = named("ci.yml")
    assert set(triggers(doc)) == {"pull_request", "workflow_call"}
    assert doc["permissions"] == {"contents": "read"}
    all_steps = steps(doc)
    assert any(step.get("run") == "make test" for step in all_steps)
    python = next(s for s in all_steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert "3.12" in str(python["with"]["python-version"]).split()
    node = next(s for s in all_steps if s.get("uses", "").startswith("actions/setup-node@"))
    assert str(node["with"]["node-version"]) == "20"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _load_wait_script() -> ModuleType:
    path = ROOT / "infra" / "scripts" / "wait_for_revisions.py"
    spec = importlib.util.spec_from_file_location("wait_for_revisions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


revisions = _load_wait_script()
IMAGE = "reg.azurecr.io/chargeback-dagster@sha256:" + "a" * 64


def app(image: str, latest: str, ready: str | None, state: str = "Succeeded") -> dict[str, Any]:
    return {
        "properties": {
            "provisioningState": state,
            "latestRevisionName": latest,
            "latestReadyRevisionName": ready,
            "template": {"containers": [{"name": "code", "image": image}]},
        }
    }


@pytest.mark.parametrize(
    ("shown", "state"),
    [
        (app(IMAGE, "code--2", "code--2"), "ready"),
        (app(IMAGE, "code--2", "code--1"), "pending"),
        (app(IMAGE, "code--2", "code--1", state="Failed"), "failed"),
        (app("reg.azurecr.io/chargeback-dagster:old", "code--1", "code--1"), "failed"),
        ({"properties": {}}, "failed"),
    ],
    ids=["ready", "rolling", "provisioning-failed", "old-image", "no-container"],
)
def test_revision_state(shown: dict[str, Any], state: str) -> None:
    assert revisions.revision_state(shown, IMAGE)[0] == state


def test_waiting_for_revisions_polls_until_no_app_is_pending() -> None:
    answers = {
        "web": [app(IMAGE, "w2", "w1"), app(IMAGE, "w2", "w2")],
        "code": [app(IMAGE, "c2", "c2")],
    }
    shown = {name: iter(views) for name, views in answers.items()}
    last: dict[str, dict[str, Any]] = {}

    def show(name: str) -> dict[str, Any]:
        last[name] = next(shown[name], last.get(name, {}))
        return last[name]

    states = revisions.wait(["web", "code"], IMAGE, show, timeout=60, sleep=lambda _: None)
    assert {name: state for name, (state, _) in states.items()} == {"web": "ready", "code": "ready"}
