from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from chargeback_pipeline.cli import main
from chargeback_pipeline.store.base import read_hour
from chargeback_pipeline.store.local import LocalEnvelopeStore

HOUR = "2024-08-06-13:00"


def line(request_id: str, timestamp: str = "2024-08-06T13:10:00Z") -> bytes:
    return json.dumps({"request_id": request_id, "timestamp": timestamp}).encode()


def stored(store: Path) -> list[bytes]:
    return [item.raw for item in read_hour(LocalEnvelopeStore(store), HOUR)]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    monkeypatch.setenv("CHARGEBACK_STORE", str(root))
    monkeypatch.delenv("CHARGEBACK_MAX_ENVELOPE_BYTES", raising=False)
    monkeypatch.delenv("CHARGEBACK_FORWARDER_KEY", raising=False)
    return root


def test_forward_stores_every_line_and_counts_the_202s(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [line("a"), line("b"), line("c")]
    calls = tmp_path / "calls.ndjson"
    calls.write_bytes(b"\n".join(lines) + b"\n")

    status = main(["forward", str(calls)])

    assert status == 0
    assert "3 x 202" in capsys.readouterr().out
    assert sorted(stored(store)) == sorted(lines)


def test_forward_names_the_store_it_wrote_into(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = tmp_path / "calls.ndjson"
    calls.write_bytes(line("a"))

    main(["forward", str(calls)])

    assert str(store) in capsys.readouterr().out


def test_forward_refused_line_exits_non_zero_and_names_the_line(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = tmp_path / "calls.ndjson"
    calls.write_bytes(b"\n".join([line("a"), b'{"request_id": "no-time"}', line("c")]))

    status = main(["forward", str(calls)])

    captured = capsys.readouterr()
    assert status != 0
    assert "line 2: 400" in captured.err
    assert "timestamp" in captured.err
    assert "2 x 202" in captured.out and "1 x 400" in captured.out
    assert sorted(stored(store)) == sorted([line("a"), line("c")])


def test_forward_refused_line_number_counts_blank_lines(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = tmp_path / "calls.ndjson"
    calls.write_bytes(b"\n".join([line("a"), b"", b"not json"]) + b"\n")

    main(["forward", str(calls)])

    assert "line 3: 400" in capsys.readouterr().err


def test_forward_over_the_size_limit_is_refused_with_413(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHARGEBACK_MAX_ENVELOPE_BYTES", "80")
    calls = tmp_path / "calls.ndjson"
    big = json.dumps(
        {"request_id": "big", "timestamp": "2024-08-06T13:10:00Z", "pad": "x" * 100}
    ).encode()
    calls.write_bytes(line("a") + b"\n" + big)

    status = main(["forward", str(calls)])

    assert status == 1
    assert "line 2: 413" in capsys.readouterr().err


def test_forward_reads_stdin_for_dash(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [line("in-1"), line("in-2")]
    stdin = SimpleNamespace(buffer=io.BytesIO(b"\n".join(lines) + b"\n"))
    monkeypatch.setattr("sys.stdin", stdin)

    status = main(["forward", "-"])

    assert status == 0
    assert "2 x 202" in capsys.readouterr().out
    assert sorted(stored(store)) == sorted(lines)


def test_forward_of_empty_input_says_nothing_was_forwarded(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=io.BytesIO(b"\n\n")))

    status = main(["forward", "-"])

    assert status == 0
    assert "nothing" in capsys.readouterr().out


def test_forward_of_missing_file_exits_1_naming_it(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["forward", str(tmp_path / "absent.ndjson")])

    assert status == 1
    assert "absent.ndjson" in capsys.readouterr().err


def test_forward_into_unwritable_store_exits_1_with_503s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("not a folder")
    monkeypatch.setenv("CHARGEBACK_STORE", str(occupied))
    calls = tmp_path / "calls.ndjson"
    calls.write_bytes(line("a"))

    status = main(["forward", str(calls)])

    assert status == 1
    assert "line 1: 503" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("start", "end"), [("2026-11-26T05", "2026-11-26T05"), ("2026-11-26T05", "2026-11-26T04")]
)
def test_materialize_with_end_not_after_start_exits_2(
    start: str, end: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["materialize", "--start", start, "--end", end])

    assert status == 2
    assert "--end must be after --start" in capsys.readouterr().err


def test_materialize_with_malformed_hour_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["materialize", "--start", "2026-11-26 05:00", "--end", "2026-11-26T06"])

    assert exit_info.value.code == 2
    assert "YYYY-MM-DDTHH" in capsys.readouterr().err


def test_report_without_marts_exits_1_saying_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marts = tmp_path / "none.duckdb"
    monkeypatch.setenv("CHARGEBACK_DUCKDB", str(marts))

    status = main(["report"])

    err = capsys.readouterr().err
    assert status == 1
    assert str(marts) in err
    assert "chargeback materialize" in err and "chargeback demo" in err
    assert not marts.exists()


def test_help_mentions_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for command in ("demo", "forward", "serve-forwarder", "materialize", "report"):
        assert command in out


def test_every_command_help_shows_an_example_that_parses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shlex

    from chargeback_pipeline.cli import COMMAND_EXAMPLES, build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name in commands:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "example" in capsys.readouterr().out, f"chargeback {name} --help has no example"
    for name, example in COMMAND_EXAMPLES.items():
        command = example.split("chargeback ", 1)[1].split("#")[0].split(">")[0]
        args = build_parser().parse_args(shlex.split(command))
        assert args.command == name


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])

    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_dagster_home_config_limits_one_run_per_hour(tmp_path: Path, monkeypatch) -> None:
    import dagster as dg

    from chargeback_pipeline.cli import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert limits == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]


def test_production_refuses_the_demo_pseudonym_key() -> None:
    from chargeback_pipeline.settings import (
        DEMO_PSEUDONYM_KEY,
        ConfigurationError,
        load_settings,
    )

    settings = load_settings(
        {"CHARGEBACK_ENV": "production", "CHARGEBACK_PSEUDONYM_KEY": DEMO_PSEUDONYM_KEY}
    )
    with pytest.raises(ConfigurationError, match="production"):
        settings.require_pseudonym_key()
    assert load_settings({"CHARGEBACK_PSEUDONYM_KEY": DEMO_PSEUDONYM_KEY}).require_pseudonym_key()
