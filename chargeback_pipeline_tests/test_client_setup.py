"""docs/client-setup.md works as written: every example, run against the local gateway.

The doc's own `chargeback gateway` command is started (on a free port) with the pool of simulated
backends it shows; its Python examples run in a fresh interpreter with the environment variables
the doc exports, its curl example runs in bash with real curl, and its LibreChat configuration is
parsed, checked against what APIM and the gateway require, and called the way LibreChat calls a
custom endpoint. Each call must leave one stored envelope carrying the cost center the doc sets.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import yaml
from openai import OpenAI

from chargeback_pipeline.gateway.routes import match_route
from chargeback_pipeline.store import open_store, read_hour
from chargeback_pipeline_tests.infra import iac

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "client-setup.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LIBRECHAT_USER = "librechat-user-42"


def sections() -> dict[str, list[tuple[str, str]]]:
    """The doc's code blocks, (language, code), under each `## ` heading."""
    found: dict[str, list[tuple[str, str]]] = {}
    for part in re.split(r"^## ", DOC.read_text(), flags=re.MULTILINE)[1:]:
        heading, _, body = part.partition("\n")
        found[heading.strip()] = [(m.group(1), m.group(2)) for m in FENCE.finditer(body)]
    return found


def only_block(section: str, language: str) -> str:
    [code] = [code for lang, code in sections()[section] if lang == language]
    return code


def tag_values(code: str, name: str) -> set[str]:
    """Values the code block gives the header `name` (Python dicts, YAML maps, curl -H)."""
    return set(re.findall(rf"[\"']?{re.escape(name)}[\"']?\s*:\s*[\"']?([\w.-]+)", code))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalGateway:
    """The doc's `chargeback gateway` command as a process, and the store it writes to."""

    def __init__(self, store: Path) -> None:
        lines = only_block("Try it locally", "bash").replace("\\\n", " ").splitlines()
        [command] = [line for line in lines if "chargeback gateway" in line]
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in lines
            if line.startswith("export ")
        )
        argv = shlex.split(command)
        documented_port = argv[argv.index("--port") + 1]
        self.port = free_port()
        argv[argv.index("--port") + 1] = str(self.port)
        argv[0] = str(Path(sys.executable).parent / "chargeback")
        self.store = store
        self.env = {
            **os.environ,
            "CHARGEBACK_STORE": str(store),
            **{k: v.replace(documented_port, str(self.port)) for k, v in exports.items()},
        }
        self.process = subprocess.Popen(
            argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        banner = self.process.stdout.readline() if self.process.stdout else ""
        assert f"127.0.0.1:{self.port}" in banner, banner
        assert "aoai-eastus-ptu (priority 1" in banner, banner

    @property
    def url(self) -> str:
        return self.env["APIM_GATEWAY_URL"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def envelopes(self) -> list[dict[str, Any]]:
        """Every stored envelope of this hour and the previous one (a call may cross the hour)."""
        store = open_store(str(self.store))
        now = datetime.now(UTC)
        hours = [f"{moment:%Y-%m-%d-%H}:00" for moment in (now - timedelta(hours=1), now)]
        return [orjson.loads(item.raw) for hour in hours for item in read_hour(store, hour)]

    def envelope_of(self, project: str, seconds: float = 15) -> dict[str, Any]:
        """The one envelope tagged with this project (delivery follows the client's answer)."""
        deadline = time.monotonic() + seconds
        while True:
            found = [e for e in self.envelopes() if e["tags"].get("project") == project]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) == 1, [e["tags"] for e in self.envelopes()]
        return found[0]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGateway]:
    server = LocalGateway(tmp_path_factory.mktemp("client-setup") / "store")
    try:
        yield server
    finally:
        server.stop()


def check_billable(envelope: dict[str, Any], code: str) -> None:
    """Answered, from the subscription of the demo key, with the cost center the doc sets."""
    [cost_center] = tag_values(code, "x-chargeback-cost-center")
    assert envelope["response"]["status"] == 200
    assert envelope["subscription"]["id"] == "sub-marketing-01"
    assert envelope["tags"]["cost-center"] == cost_center
    assert envelope["backend"]["id"] == "aoai-eastus-ptu"  # the pool's priority 1


@pytest.mark.parametrize("section", ["OpenAI Python SDK", "AzureOpenAI client"])
def test_python_examples_run_as_written(gateway: LocalGateway, section: str) -> None:
    code = only_block(section, "python")
    assert "os.environ" in code and "127.0.0.1" not in code  # the endpoint comes from the env
    done = subprocess.run(
        [sys.executable, "-c", code], env=gateway.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    [project] = tag_values(code, "x-chargeback-project")
    envelope = gateway.envelope_of(project)
    check_billable(envelope, code)
    if "x-end-user-id" in code:
        [user] = re.findall(r'"x-end-user-id": "([^"]+)"', code)
        assert envelope["caller"]["user_id"] == user


def test_curl_example_runs_as_written(gateway: LocalGateway) -> None:
    code = only_block("curl", "bash")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        env=gateway.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["usage"]["total_tokens"] > 0
    [project] = tag_values(code, "x-chargeback-project")
    check_billable(gateway.envelope_of(project), code)


def _apim_subscription_header() -> str:
    (api,) = iac.resources(
        iac.bicep_module("apim"), "Microsoft.ApiManagement/service/apis"
    ).values()
    header: str = api["config"]["properties"]["subscriptionKeyParameterNames"]["header"]
    return header


def _apim_url_templates() -> set[str]:
    operations = iac.bicep_module("apim")["variables"]["operations"]["value"]
    return {operation["urlTemplate"] for operation in operations}


def test_librechat_endpoint_reaches_apim_and_is_billed(gateway: LocalGateway) -> None:
    code = only_block("LibreChat", "yaml")
    [endpoint] = yaml.safe_load(code)["endpoints"]["custom"]
    base = urlsplit(endpoint["baseURL"])
    headers: dict[str, str] = endpoint["headers"]
    # What APIM requires: the subscription key in the API's key header, an operation for the
    # path LibreChat calls (<baseURL>/chat/completions), a known cost center.
    assert base.scheme == "https" and base.path.startswith("/openai/")
    assert headers[_apim_subscription_header()] == "${APIM_SUBSCRIPTION_KEY}"
    assert "/" + base.path.removeprefix("/openai/").rstrip("/") + "/chat/completions" in (
        _apim_url_templates()
    )
    assert match_route(base.path.rstrip("/") + "/chat/completions") is not None
    cost_centers = (ROOT / "dbt_like_sql" / "seeds" / "cost_centers.csv").read_text()
    assert f",{headers['x-chargeback-cost-center']}," in cost_centers
    # The call LibreChat makes, with its placeholders resolved and APIM swapped for the gateway.
    values = {"APIM_SUBSCRIPTION_KEY": gateway.env["APIM_SUBSCRIPTION_KEY"]}

    def resolve(text: str) -> str:
        text = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)
        return text.replace("{{LIBRECHAT_USER_ID}}", LIBRECHAT_USER)

    client = OpenAI(
        base_url=gateway.url + base.path,
        api_key=resolve(endpoint["apiKey"]),
        default_headers={name: resolve(value) for name, value in headers.items()},
        max_retries=0,
    )
    reply = client.chat.completions.create(
        model=endpoint["models"]["default"][0],
        messages=[{"role": "user", "content": "Hello from LibreChat."}],
    )
    assert reply.usage is not None and reply.usage.total_tokens > 0
    envelope = gateway.envelope_of(headers["x-chargeback-project"])
    check_billable(envelope, code)
    assert envelope["caller"]["user_id"] == LIBRECHAT_USER
    assert envelope["backend"]["deployment"] == endpoint["models"]["default"][0]
