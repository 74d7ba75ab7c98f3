"""The Azure Function entry point, called directly with built requests (no Functions host here)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import azure.functions as func
import orjson
import pytest
from azure.functions.decorators.function_app import Function

from chargeback_pipeline.devtools.azurite import Azurite
from chargeback_pipeline.settings import load_settings
from chargeback_pipeline.store import open_store, read_hour
from chargeback_pipeline_tests.conftest import EXAMPLES, REPO_ROOT

APP_DIR = REPO_ROOT / "infra" / "function_app"
HOUR = "2026-11-27-13:00"
HEAVY = ("dagster", "polars", "pandas", "duckdb", "pandera", "pyarrow", "deltalake", "numpy")


def load(name: str) -> ModuleType:
    """A module of infra/function_app, loaded from its path under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"infra_function_app_{name}", APP_DIR / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class LoadedApp:
    """function_app.py loaded once, with its one registered Function (the host indexes once)."""

    module: ModuleType
    function: Function

    @property
    def handler(self) -> Callable[[func.HttpRequest], func.HttpResponse]:
        return self.function.get_user_function()


@pytest.fixture(autouse=True)
def no_ambient_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Key and size limit come from each test, not from the developer's shell."""
    monkeypatch.delenv("CHARGEBACK_FORWARDER_KEY", raising=False)
    monkeypatch.delenv("CHARGEBACK_MAX_ENVELOPE_BYTES", raising=False)


@pytest.fixture(scope="module")
def app_module() -> LoadedApp:
    module = load("function_app.py")
    (function,) = module.app.get_functions()
    assert function.get_function_name() == "envelopes"
    return LoadedApp(module, function)


def post(
    app: LoadedApp, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    request = func.HttpRequest(
        method="POST", url="/api/envelopes", headers=headers or {}, body=body
    )
    response = app.handler(request)
    return response.status_code, json.loads(response.get_body())


def chat_completion(**changes: object) -> bytes:
    envelope = json.loads((EXAMPLES / "chat_completion.json").read_text())
    return orjson.dumps({**envelope, **changes})


def stored(container: str) -> list[bytes]:
    settings = load_settings()
    return [item.raw for item in read_hour(open_store(settings.store, container), HOUR)]


def test_the_route_is_post_envelopes_behind_a_function_key(app_module):
    binding = json.loads(app_module.function.get_function_json())["bindings"][0]
    assert binding["type"] == "httpTrigger" and binding["route"] == "envelopes"
    assert binding["methods"] == ["POST"] and binding["authLevel"] == "FUNCTION"


def test_envelope_is_stored_as_received_under_its_hour(app_module, blob_store_env):
    body = chat_completion()
    status, answer = post(app_module, body, {"Content-Length": str(len(body))})
    assert status == 202
    assert answer["status"] == 202 and answer["message"] == "stored"
    assert answer["stored_as"].startswith("raw/2026/11/27/13/")
    assert stored(blob_store_env) == [body]


def test_the_store_is_opened_once_per_worker(app_module, blob_store_env, monkeypatch):
    opened = []

    def counting_open(spec: str, container: str):
        opened.append(container)
        return open_store(spec, container)

    monkeypatch.setattr(app_module.module, "open_store", counting_open)
    for n in range(3):
        assert post(app_module, chat_completion(request_id=f"r{n}"))[0] == 202
    assert opened == [blob_store_env]
    assert len(stored(blob_store_env)) == 3


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({"timestamp": "2026-11-27T13:05:00Z"}), "no request_id"),
        (chat_completion(timestamp="yesterday"), "timestamp"),
        (chat_completion(timestamp="2026-11-27T13:05:00"), "UTC offset"),
    ],
)
def test_what_cannot_be_stored_is_refused_400(app_module, blob_store_env, body, reason):
    status, answer = post(app_module, body)
    assert status == 400 and reason in answer["message"] and answer["stored_as"] is None
    assert stored(blob_store_env) == []


def test_over_the_limit_is_refused_413(app_module, blob_store_env, monkeypatch):
    body = chat_completion()
    monkeypatch.setenv("CHARGEBACK_MAX_ENVELOPE_BYTES", str(len(body) - 1))
    status, answer = post(app_module, body)
    assert status == 413 and str(len(body) - 1) in answer["message"]
    monkeypatch.setenv("CHARGEBACK_MAX_ENVELOPE_BYTES", str(len(body)))
    assert post(app_module, body)[0] == 202
    assert stored(blob_store_env) == [body]


class UnreadableRequest(func.HttpRequest):
    """A request whose body must not be read."""

    def get_body(self) -> bytes:
        raise AssertionError("the body was read")


def test_declared_length_over_the_limit_is_refused_before_reading(app_module, blob_store_env):
    request = UnreadableRequest(
        method="POST", url="/api/envelopes", headers={"Content-Length": "10000000000"}, body=b""
    )
    response = app_module.handler(request)
    assert response.status_code == 413


def test_forwarder_key_when_configured(app_module, blob_store_env, monkeypatch):
    monkeypatch.setenv("CHARGEBACK_FORWARDER_KEY", "s3cret-key")
    for headers in ({}, {"x-functions-key": "wrong"}):
        status, answer = post(app_module, chat_completion(request_id="keyless"), headers)
        assert status == 401 and "key" in answer["message"]
    status, _ = post(app_module, chat_completion(), {"X-Functions-Key": "s3cret-key"})
    assert status == 202
    assert [json.loads(raw)["request_id"] for raw in stored(blob_store_env)] == [
        "0b7e5c1e-4f7a-4a51-9d0e-000000000001"
    ]


def test_unreachable_storage_answers_503_and_stores_nothing(
    app_module, blob_store_env, azurite: Azurite, monkeypatch
):
    dead = azurite.connection_string.replace(f":{azurite.port}/", ":1/")
    monkeypatch.setenv("CHARGEBACK_STORE", dead)
    status, answer = post(app_module, chat_completion())
    assert status == 503 and "retry" in answer["message"]
    monkeypatch.setenv("CHARGEBACK_STORE", azurite.connection_string)
    assert stored(blob_store_env) == []


def test_unset_store_answers_503_instead_of_writing_to_the_worker_disk(
    app_module, chargeback_env, monkeypatch
):
    monkeypatch.delenv("CHARGEBACK_STORE")
    status, answer = post(app_module, chat_completion())
    assert status == 503 and "CHARGEBACK_STORE" in answer["message"]
    assert not (REPO_ROOT / ".chargeback" / "store" / "raw" / "2026" / "11" / "27" / "13").exists()


def test_concurrent_posts_to_one_hour_lose_nothing(app_module, blob_store_env):
    sent: dict[str, bytes] = {}

    def worker(w: int) -> None:
        for i in range(25):
            body = chat_completion(request_id=f"w{w}-{i}")
            sent[f"w{w}-{i}"] = body
            assert post(app_module, body)[0] == 202

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    raws = stored(blob_store_env)
    assert len(raws) == 200
    # Every stored line is one whole envelope, byte for byte as sent.
    assert {json.loads(raw)["request_id"]: raw for raw in raws} == sent


# --- packaging -------------------------------------------------------------------------------

IMPORT_CHECK = """
import json, sys
import azure.functions as func
import function_app
import chargeback_pipeline.store.blob, azure.identity
(function,) = function_app.app.get_functions()
body = json.dumps({"request_id": "r1", "timestamp": "2026-11-27T13:05:00Z"}).encode()
request = func.HttpRequest(method="POST", url="/api/envelopes", headers={}, body=body)
status = function.get_user_function()(request).status_code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1:])
print(json.dumps({"status": status, "heavy": heavy,
                  "chargeback": sys.modules["chargeback_pipeline"].__file__}))
"""


def import_in_subprocess(folder: Path, tmp_path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEBACK_")}
    env["CHARGEBACK_STORE"] = str(tmp_path / "store")
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, *HEAVY],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_function_app_imports_nothing_heavy(tmp_path):
    result = import_in_subprocess(APP_DIR, tmp_path)
    assert result["status"] == 202 and result["heavy"] == []


def test_built_package_is_self_contained_and_light(tmp_path):
    out = tmp_path / "package"
    copied = load("build.py").build(out)
    names = {path.relative_to(out).as_posix() for path in copied}
    assert {
        "chargeback_pipeline/__init__.py",
        "chargeback_pipeline/settings.py",
        "chargeback_pipeline/forwarder/core.py",
        "chargeback_pipeline/store/blob.py",
    } <= names
    assert not any(
        name.startswith(("chargeback_pipeline/defs", "chargeback_pipeline/cli")) for name in names
    )
    for name in ("function_app.py", "host.json", "requirements.txt"):
        assert (out / name).is_file()
    result = import_in_subprocess(out, tmp_path)
    assert result["status"] == 202 and result["heavy"] == []
    # The copy in the package is what runs, not the repository's installed package.
    assert Path(str(result["chargeback"])).is_relative_to(out)


def test_build_refuses_to_replace_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not made by this script"):
        load("build.py").build(tmp_path)
    assert (tmp_path / "precious.txt").exists()


def test_requirements_pin_the_versions_in_setup_py():
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    pins = {
        node.value.split("==")[0]: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "==" in node.value
    }
    lines = (APP_DIR / "requirements.txt").read_text().splitlines()
    required = [line for line in lines if line.strip() and not line.startswith("#")]
    assert required == [pins["azure-functions"], pins["azure-storage-blob"], pins["azure-identity"]]


def test_host_json_serves_api_routes_without_an_extension_bundle():
    host = json.loads((APP_DIR / "host.json").read_text())
    assert host["version"] == "2.0" and host["extensions"]["http"]["routePrefix"] == "api"
    # HTTP triggers are built into the Functions runtime; a bundle would only add startup time.
    assert "extensionBundle" not in host
