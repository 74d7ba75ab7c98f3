"""The `chargeback` command (CONTRACT §5): demo, forward, serve-forwarder, materialize, report."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from chargeback_pipeline.settings import (
    DEMO_PSEUDONYM_KEY,
    PROJECT_ROOT,
    ConfigurationError,
    load_settings,
)

EXAMPLES = """examples:
  chargeback demo                                   # a day of traffic end to end, then the bill
  chargeback forward calls.ndjson                   # store envelopes like the Azure Function
  chargeback serve-forwarder --port 7071            # POST /api/envelopes on 127.0.0.1
  chargeback gateway --mode passthrough             # OpenAI-compatible gateway on :8080
  chargeback materialize --start 2026-11-26T00 --end 2026-11-27T00
  chargeback report --month 2026-11 --format csv
  chargeback report --month 2026-11 --format focus --out exports/  # FOCUS 1.2 files
  chargeback forget-user 3f1c9a2e-user              # erasure: rows kept, attributed to no user
  chargeback sql --query "select * from chargeback_monthly"   # or --file docs/cookbook.sql
  chargeback serve-api --port 8080                  # read API (JSON + Prometheus) over the marts
  chargeback report --format html --out reports/    # one self-contained page with charts
"""

# One example per command, shown by `chargeback COMMAND --help`.
COMMAND_EXAMPLES = {
    "demo": "chargeback demo --day 2026-11-26 --calls 2000 --history-days 0",
    "forward": "cat calls.ndjson | chargeback forward -   # or: chargeback forward calls.ndjson",
    "serve-forwarder": "chargeback serve-forwarder --port 7071   # POST /api/envelopes",
    "gateway": "chargeback gateway --backend aoai-eastus-ptu=simulator,priority=1 "
    "--backend aoai-eastus-1=simulator,priority=2",
    "simulate-openai": "chargeback simulate-openai --port 8081",
    "materialize": "chargeback materialize --start 2026-11-26T00 --end 2026-11-27T00",
    "report": "chargeback report --month 2026-11 --format csv > 2026-11.csv",
    "forget-user": "chargeback forget-user 3f1c9a2e-user   # the id as the gateway saw it",
}


# Runs of one hour never overlap: the queue admits one run per partition key at a time.
DAGSTER_INSTANCE_CONFIG = """\
telemetry:
  enabled: false
concurrency:
  runs:
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (default .chargeback/dagster_home) with telemetry off, so runs are kept."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".chargeback" / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_INSTANCE_CONFIG)
    os.environ["DAGSTER_HOME"] = str(home.resolve())
    return home


def parse_hour(text: str) -> datetime:
    """`YYYY-MM-DDTHH` as a UTC instant."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not YYYY-MM-DDTHH (e.g. 2026-11-26T13)"
        ) from None


def progress(done: int, total: int, label: str, started: float) -> None:
    """A self-overwriting progress bar on a terminal; a plain line per hour in logs."""
    width = 30
    filled = width * done // max(total, 1)
    elapsed = time.monotonic() - started
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label} {elapsed:5.1f}s"
    if sys.stderr.isatty():
        sys.stderr.write("\r" + line.ljust(100) + ("\n" if done == total else ""))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def cmd_forward(args: argparse.Namespace) -> int:
    from chargeback_pipeline.forwarder.core import forward_envelope, split_ndjson
    from chargeback_pipeline.store import open_store

    settings = load_settings()
    store = open_store(settings.store, settings.container)
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    answers: dict[int, int] = {}
    for number, line in split_ndjson(data):
        result = forward_envelope(line, store, settings.max_envelope_bytes)
        answers[result.status] = answers.get(result.status, 0) + 1
        if not result.accepted:
            print(f"line {number}: {result.status} {result.message}", file=sys.stderr)
    summary = ", ".join(f"{count} x {status}" for status, count in sorted(answers.items()))
    print(f"forwarded into {store.describe()}: {summary or 'nothing'}")
    return 0 if set(answers) <= {202} else 1


def cmd_serve_forwarder(args: argparse.Namespace) -> int:
    from chargeback_pipeline.forwarder.server import serve

    serve(args.host, args.port)
    return 0


def cmd_serve_api(args: argparse.Namespace) -> int:
    from chargeback_pipeline.api import serve

    serve(args.host, args.port, insecure_no_auth=args.insecure_no_auth)
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from chargeback_pipeline.gateway import run_gateway

    return run_gateway(args)


def cmd_simulate_openai(args: argparse.Namespace) -> int:
    from chargeback_pipeline.gateway import run_simulator

    return run_simulator(args)


def materialize_hours(hours: Sequence[str], show_progress: bool = True) -> list[str]:
    """Run the hourly assets for each hour in-process; returns the hours that failed."""
    import dagster as dg

    from chargeback_pipeline.defs.costs import usage_costs
    from chargeback_pipeline.defs.ingest import ingested_envelopes
    from chargeback_pipeline.defs.reconciliation import LogAnalyticsSettings, usage_reconciliation
    from chargeback_pipeline.resources import ChargebackSettings

    ensure_dagster_home()
    failed = []
    skipped: set[str] = set()
    started = time.monotonic()
    resources = {"chargeback": ChargebackSettings(), "log_analytics": LogAnalyticsSettings()}
    with dg.DagsterInstance.get() as instance:
        for done, hour in enumerate(hours, start=1):
            result = dg.materialize(
                [ingested_envelopes, usage_costs, usage_reconciliation],
                partition_key=hour,
                resources=resources,
                instance=instance,
                raise_on_error=False,
                tags={"chargeback/source": "cli"},
                run_config=_quiet_logs(),
            )
            if not result.success:
                failed.append(hour)
                print(f"{hour}: {failure_message(result)}", file=sys.stderr)
            for warning in failed_checks(result):
                print(f"{hour}: {warning}", file=sys.stderr)
            skipped |= skipped_checks(result)
            if show_progress:
                progress(done, len(hours), hour + (" FAILED" if hour in failed else ""), started)
    for line in sorted(skipped):
        print(line, file=sys.stderr)
    return failed


def skipped_checks(result: object) -> set[str]:
    """One line per check that was skipped, with the reason (printed once, not per hour)."""
    lines = set()
    for check in getattr(result, "get_asset_check_evaluations", list)():
        found = {k: v.value for k, v in check.metadata.items()}
        if found.get("status") == "skipped":
            name = f"{check.asset_key.to_user_string()}.{check.check_name}"
            lines.add(f"check {name} skipped: {found.get('reason')}")
    return lines


def materialize_marts() -> bool:
    """Rebuild the DuckDB marts in-process; True on success."""
    import dagster as dg

    from chargeback_pipeline.defs.marts import dbt_like_marts
    from chargeback_pipeline.resources import ChargebackSettings

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [dbt_like_marts],
            resources={"chargeback": ChargebackSettings()},
            instance=instance,
            raise_on_error=False,
            run_config=_quiet_logs(),
        )
    for warning in failed_checks(result):
        print(f"marts: {warning}", file=sys.stderr)
    return result.success


def failure_message(result: object) -> str:
    """The first step failure's error message of an in-process run."""
    for event in getattr(result, "all_events", []):
        if event.is_step_failure and event.step_failure_data.error:
            return str(event.step_failure_data.error.message).strip()
    return "run failed"


def failed_checks(result: object) -> list[str]:
    """One line per asset check that did not pass, with what it found."""
    lines = []
    for check in getattr(result, "get_asset_check_evaluations", list)():
        if not check.passed:
            found = {k: v.value for k, v in check.metadata.items() if k != "preview"}
            name = f"{check.asset_key.to_user_string()}.{check.check_name}"
            lines.append(f"check {name} did not pass ({check.severity.value}): {found}")
    return lines


def _quiet_logs() -> dict[str, object]:
    return {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def cmd_materialize(args: argparse.Namespace) -> int:
    from chargeback_pipeline.lib.hours import hour_keys

    if args.end <= args.start:
        print("--end must be after --start (the range is [start, end))", file=sys.stderr)
        return 2
    hours = list(hour_keys(args.start, args.end))
    failed = materialize_hours(hours)
    marts_ok = materialize_marts()
    marts = "built" if marts_ok else "FAILED"
    print(f"{len(hours) - len(failed)}/{len(hours)} hours materialised; marts {marts}")
    for hour in failed:
        print(f"failed: {hour} (see `dagster dev` run logs for details)", file=sys.stderr)
    return 0 if not failed and marts_ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from chargeback_pipeline.report import monthly_chargeback, render

    settings = load_settings()
    if not settings.duckdb_path.exists():
        print(
            f"no marts at {settings.duckdb_path}: "
            "run `chargeback materialize` or `chargeback demo` first",
            file=sys.stderr,
        )
        return 1
    if args.format == "focus":
        from chargeback_pipeline.report import export_focus

        try:
            paths = export_focus(settings.duckdb_path, args.month, args.out or Path("."))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for path in paths:
            print(path)
        return 0
    if args.format == "html":
        from chargeback_pipeline.report import default_reports_dir, write_html_report

        try:
            path = write_html_report(
                settings.duckdb_path,
                args.month,
                args.out or default_reports_dir(settings.duckdb_path),
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(path)
        return 0
    month, frame = monthly_chargeback(settings.duckdb_path, args.month)
    print(render(frame, args.format, f"Chargeback {month}"))
    return 0


def cmd_forget_user(args: argparse.Namespace) -> int:
    from chargeback_pipeline.lib.erasure import forget_user
    from chargeback_pipeline.store import open_store

    if not args.user_id:
        print("the user id is empty", file=sys.stderr)
        return 2
    settings = load_settings()
    key = settings.require_pseudonym_key()
    erased = forget_user(settings.lake, key, args.user_id, settings.lake_storage_options())
    for table, rows in erased.rows.items():
        print(f"{table}: {rows} rows no longer attributed to the user")
    if not any(erased.rows.values()):
        print("no rows carry this user's pseudonym (is CHARGEBACK_PSEUDONYM_KEY the ingest key?)")
        return 0
    marts_ok = materialize_marts()
    print(f"marts {'rebuilt' if marts_ok else 'FAILED: run `chargeback materialize` again'}")
    store = open_store(settings.store, settings.container)
    raw = [hour for hour in erased.hours if store.list_hour(hour)]
    if raw:
        # Re-ingesting these hours would hash the user again; retention deletes them.
        print(
            f"raw envelopes of {len(raw)} hour(s) ({raw[0]} .. {raw[-1]}) still hold the user id "
            "until retention deletes them; run forget-user again after re-running any of them"
        )
    return 0 if marts_ok else 1


def cmd_sql(args: argparse.Namespace) -> int:
    from chargeback_pipeline import sql_shell

    try:
        params = sql_shell.parse_params(args.param)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    names = set(args.name) if args.name else None
    return sql_shell.main(load_settings(), args.query, args.file, params, names)


def forward_all(envelopes: Iterable[dict[str, object]]) -> dict[int, int]:
    """Pass envelopes through the forwarder core into the configured store; counts per status."""
    import orjson

    from chargeback_pipeline.forwarder.core import forward_envelope
    from chargeback_pipeline.store import open_store

    settings = load_settings()
    store = open_store(settings.store, settings.container)
    answers: dict[int, int] = {}
    for envelope in envelopes:
        status = forward_envelope(orjson.dumps(envelope), store, settings.max_envelope_bytes).status
        answers[status] = answers.get(status, 0) + 1
    return answers


def cmd_demo(args: argparse.Namespace) -> int:
    from chargeback_pipeline.lib.demo_traffic import (
        generate_day,
        generate_history,
        generate_spike,
        history_hour_keys,
    )
    from chargeback_pipeline.lib.hours import hour_keys
    from chargeback_pipeline.report import monthly_chargeback, render

    if not os.environ.get("CHARGEBACK_PSEUDONYM_KEY"):
        os.environ["CHARGEBACK_PSEUDONYM_KEY"] = DEMO_PSEUDONYM_KEY
        print("demo: using the DEMO-ONLY pseudonym key; set CHARGEBACK_PSEUDONYM_KEY for real data")
    day = args.day or (datetime.now(UTC) - timedelta(days=1)).date()
    settings = load_settings()
    print(
        f"demo: generating {args.calls} calls for {day} (seed {args.seed}), "
        f"{args.history_days} days of history and an evening spike"
    )
    answers = forward_all(
        itertools.chain(
            generate_history(day, seed=args.seed, calls=args.calls, days=args.history_days),
            generate_day(day, seed=args.seed, calls=args.calls),
            generate_spike(day, seed=args.seed, calls=args.calls // 4),
        )
    )
    print(f"demo: forwarder answers {answers} into {settings.store}")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hours = history_hour_keys(day, args.history_days) + list(
        hour_keys(start, start + timedelta(days=1))
    )
    print(f"demo: materialising {len(hours)} hours into {settings.lake}")
    failed = materialize_hours(hours)
    if failed or not materialize_marts():
        print(f"demo: failed hours {failed}; see `dagster dev` for run logs", file=sys.stderr)
        return 1
    month, frame = monthly_chargeback(settings.duckdb_path, f"{day:%Y-%m}")
    print(render(frame, "table", f"Chargeback {month} (marts: {settings.duckdb_path})"))
    return 0


def _with_examples(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Give each command without an epilog its example from COMMAND_EXAMPLES."""
    for name, parser in commands.choices.items():
        if parser.epilog is None and name in COMMAND_EXAMPLES:
            parser.epilog = f"example:\n  {COMMAND_EXAMPLES[name]}"
            parser.formatter_class = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chargeback",
        description="Exact chargeback for Azure OpenAI traffic behind API Management.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate a day of traffic, bill it, print the table")
    demo.add_argument(
        "--day", type=date.fromisoformat, help="UTC day to simulate (default: yesterday)"
    )
    demo.add_argument("--calls", type=int, default=4000, help="calls to generate (default 4000)")
    demo.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    demo.add_argument(
        "--history-days",
        type=int,
        default=7,
        help="days of traffic before --day, for the anomaly mart (default 7; 0 = none)",
    )
    demo.set_defaults(handler=cmd_demo)

    forward = commands.add_parser("forward", help="store NDJSON envelopes as the Function would")
    forward.add_argument("file", help="NDJSON file, one envelope per line; '-' reads stdin")
    forward.set_defaults(handler=cmd_forward)

    serve = commands.add_parser("serve-forwarder", help="the forwarding function on HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7071)
    serve.set_defaults(handler=cmd_serve_forwarder)

    api = commands.add_parser(
        "serve-api",
        help="read-only HTTP API over the marts and the lake (JSON, Prometheus metrics)",
        description="GET /api/v1/usage/summary, /api/v1/chargeback/report, /api/v1/health and\n"
        "/api/v1/metrics (Prometheus); the spec is docs/openapi.yaml. Every route but health\n"
        "(open, for probes) needs a key of CHARGEBACK_API_KEY (comma-separated while rotating)\n"
        "in an x-api-key header or as Authorization: Bearer.",
        epilog="example:\n"
        "  CHARGEBACK_API_KEY=$(openssl rand -hex 32) chargeback serve-api --port 8080\n"
        '  curl -H "x-api-key: $CHARGEBACK_API_KEY" '
        "'http://127.0.0.1:8080/api/v1/chargeback/report?month=2026-11'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    api.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    api.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="no API key (local demo only: refused off loopback and in production)",
    )
    api.set_defaults(handler=cmd_serve_api)

    from chargeback_pipeline.gateway import add_gateway_arguments, add_simulator_arguments

    gateway = commands.add_parser(
        "gateway", help="OpenAI-compatible gateway doing what the APIM policies do"
    )
    add_gateway_arguments(gateway)
    gateway.set_defaults(handler=cmd_gateway)
    simulate = commands.add_parser("simulate-openai", help="an Azure OpenAI simulator")
    add_simulator_arguments(simulate)
    simulate.set_defaults(handler=cmd_simulate_openai)

    materialize = commands.add_parser(
        "materialize", help="materialise hours [start, end) and then the marts"
    )
    materialize.add_argument("--start", type=parse_hour, required=True, help="YYYY-MM-DDTHH, UTC")
    materialize.add_argument(
        "--end", type=parse_hour, required=True, help="YYYY-MM-DDTHH, exclusive"
    )
    materialize.set_defaults(handler=cmd_materialize)

    report = commands.add_parser("report", help="the monthly chargeback per cost center")
    report.add_argument("--month", help="YYYY-MM (default: the latest month in the marts)")
    report.add_argument(
        "--format", choices=("table", "csv", "json", "focus", "html"), default="table"
    )
    report.add_argument(
        "--out",
        type=Path,
        help="folder for --format focus (FOCUS 1.2 CSV and Parquet; default: .) or --format html "
        "(chargeback-YYYY-MM.html; default: reports/ beside the marts file)",
    )
    report.set_defaults(handler=cmd_report)

    forget = commands.add_parser(
        "forget-user", help="erasure: clear one user's pseudonym from the lake and the marts"
    )
    forget.add_argument("user_id", help="the user id as the gateway saw it (caller.user_id)")
    forget.set_defaults(handler=cmd_forget_user)

    sql = commands.add_parser(
        "sql",
        help="query the marts and lake_* views (read-only); a prompt when run without a query",
        epilog="example: chargeback sql --file docs/cookbook.sql --name cost-by-team",
    )
    sql.add_argument("--query", help='SQL to run, e.g. "select * from chargeback_monthly"')
    sql.add_argument("--file", type=Path, help="SQL file; `-- name: <slug>` lines split queries")
    sql.add_argument("--name", action="append", help="run only this named query of --file")
    sql.add_argument(
        "--param", action="append", default=[], help="bind $name: --param user_hash=<hash>"
    )
    sql.set_defaults(handler=cmd_sql)
    _with_examples(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigurationError as error:
        print(f"configuration: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from chargeback_pipeline.lib.reference import ReferenceDataError
        from chargeback_pipeline.store import StoreError

        if isinstance(error, ReferenceDataError | StoreError | FileNotFoundError):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
