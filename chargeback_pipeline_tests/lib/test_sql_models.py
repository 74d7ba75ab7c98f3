from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from chargeback_pipeline.lib.marts import mart_variables, seed_sources
from chargeback_pipeline.lib.sql_models import (
    DayWindowError,
    ModelDocsError,
    ModelGraphError,
    ModelRunError,
    compile_model,
    load_model_docs,
    load_models,
    order_models,
    run_model_tests,
    run_models,
    select_models,
)
from chargeback_pipeline.lib.tables import (
    QUARANTINED_ENVELOPES,
    UNALLOCATED,
    USAGE_COSTS,
    conform,
    empty_frame,
)

PROJECT = Path(__file__).resolve().parents[2] / "dbt_like_sql"


def shipped_seeds() -> dict[tuple[str, str], pl.DataFrame]:
    """The shipped seeds every model reads through `source('seeds', ...)`."""
    used = {source for model in load_models(PROJECT).values() for source in model.sources}
    return seed_sources(PROJECT / "seeds", used)


def write_project(root: Path, files: dict[str, str], docs: str | None = None) -> Path:
    """A throwaway dbt_like_sql folder: `{"staging/a.sql": sql, ...}` plus models.yml."""
    for name, sql in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql, encoding="utf-8")
    if docs is not None:
        (root / "models.yml").write_text(docs, encoding="utf-8")
    return root


def test_order_puts_refs_first_and_select_takes_upstream(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        {
            "staging/stg_a.sql": "select * from {{ source('lake', 'a') }}",
            "marts/m_one.sql": "select * from {{ ref('stg_a') }}",
            "marts/m_two.sql": "from {{ ref( \"m_one\" ) }} join {{ref('stg_a')}} using (x)",
        },
    )
    models = load_models(project)

    assert [m.name for m in order_models(models)] == ["stg_a", "m_one", "m_two"]
    assert models["m_two"].refs == ("m_one", "stg_a")
    assert models["stg_a"].sources == (("lake", "a"),)
    assert models["stg_a"].layer == "staging"
    assert [m.name for m in select_models(models, ["m_one"])] == ["stg_a", "m_one"]


def test_cycle_is_named(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        {
            "marts/a.sql": "select * from {{ ref('b') }}",
            "marts/b.sql": "select * from {{ ref('c') }}",
            "marts/c.sql": "select * from {{ ref('a') }}",
        },
    )
    with pytest.raises(ModelGraphError, match="cycle: a -> b -> c -> a"):
        order_models(load_models(project))


def test_unknown_ref_names_file_and_ref(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"marts/a.sql": "select * from {{ ref('nope') }}"})
    with pytest.raises(ModelGraphError, match=r"a\.sql: ref to unknown model 'nope'"):
        order_models(load_models(project))


def test_unsupported_template_is_rejected(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"marts/a.sql": "select * from {{ this }}"})
    with pytest.raises(ModelGraphError, match="unsupported template"):
        load_models(project)


def test_config_declares_incremental_by_day_and_is_dropped_when_compiled(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        {
            "marts/a.sql": "{{ config(materialized='incremental_by_day', time_column='day') }}\n"
            "select current_date as day",
            "marts/b.sql": "select 1 as n",
        },
    )
    models = load_models(project)
    assert (models["a"].materialized, models["a"].time_column) == ("incremental_by_day", "day")
    assert models["a"].incremental and not models["b"].incremental
    assert compile_model(models["a"], {}) == "select current_date as day"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("materialized='view'", "materialized must be one of"),
        ("materialized='incremental_by_day'", "time_column goes with"),
        ("time_column='day'", "time_column goes with"),
        ("materialized='table', unique_key='id'", "unknown config"),
        ("materialized=table", "name='value' pairs"),
    ],
)
def test_bad_config_is_rejected(tmp_path: Path, config: str, message: str) -> None:
    project = write_project(tmp_path, {"marts/a.sql": f"{{{{ config({config}) }}}} select 1"})
    with pytest.raises(ModelGraphError, match=message):
        load_models(project)


def test_vars_are_bound_as_parameters(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        {
            "marts/picked.sql": (
                "select x, {{ var('label') }} as label from {{ source('lake', 't') }}"
                " where x >= {{ var('min_x') }}"
            )
        },
    )
    models = load_models(project)
    assert compile_model(models["picked"], {("lake", "t"): "src_lake__t"}) == (
        'select x, $label as label from "src_lake__t" where x >= $min_x'
    )
    con = duckdb.connect()
    sources: dict[tuple[str, str], object] = {("lake", "t"): pa.table({"x": [1, 2, 3]})}
    label = "o'brien'); drop table picked; --"

    runs = run_models(con, [models["picked"]], sources, {"min_x": 2, "label": label, "unused": 0})

    assert runs[0].rows == 2
    assert con.execute("select x, label from picked order by x").fetchall() == [
        (2, label),
        (3, label),
    ]
    with pytest.raises(ModelGraphError, match=r"no value given for vars \['label'\]"):
        run_models(con, [models["picked"]], sources, {"min_x": 2})


def test_failed_model_rolls_back_the_whole_run(tmp_path: Path) -> None:
    files = {
        "staging/stg_n.sql": "select 1 as n",
        "marts/m.sql": "select n * 10 as n from {{ ref('stg_n') }}",
    }
    con = duckdb.connect()
    run_models(con, order_models(load_models(write_project(tmp_path, files))), {})

    broken = {
        "staging/stg_n.sql": "select 2 as n",
        "marts/m.sql": "select cast('not a number' as integer) as n from {{ ref('stg_n') }}",
    }
    models = order_models(load_models(write_project(tmp_path, broken)))
    with pytest.raises(ModelRunError, match="model m "):
        run_models(con, models, {})

    assert con.execute("select n from stg_n").fetchall() == [(1,)]
    assert con.execute("select n from m").fetchall() == [(10,)]


INCREMENTAL = "{{ config(materialized='incremental_by_day', time_column='day') }}\n"


def test_replacing_days_rewrites_only_those_days_and_reads_refs_through_them(
    tmp_path: Path,
) -> None:
    files = {
        "staging/stg_calls.sql": INCREMENTAL + "select * from {{ source('lake', 'calls') }}",
        "marts/daily.sql": INCREMENTAL
        + "select day, count(*) as calls from {{ ref('stg_calls') }} group by day",
        "marts/total.sql": "select sum(calls) as calls from {{ ref('daily') }}",
    }
    models = order_models(load_models(write_project(tmp_path, files)))
    first = pl.DataFrame({"day": [datetime(2026, 3, d).date() for d in (1, 1, 2)]})
    con = duckdb.connect()
    run_models(con, models, {("lake", "calls"): first})

    # only day 2 is re-read: two calls now, and day 1 must keep its two
    day_two = datetime(2026, 3, 2).date()
    again = pl.DataFrame({"day": [day_two, day_two]})
    runs = run_models(
        con,
        models,
        {("lake", "calls"): again},
        refresh={"stg_calls": frozenset({day_two}), "daily": frozenset({day_two})},
    )

    assert [(run.name, run.action) for run in runs] == [
        ("stg_calls", "replaced_days"),
        ("daily", "replaced_days"),
        ("total", "rebuilt"),
    ]
    assert sorted(con.execute("select * from daily").fetchall()) == [
        (datetime(2026, 3, 1).date(), 2),
        (day_two, 2),
    ]
    assert con.execute("select calls from total").fetchall() == [(4,)]
    with pytest.raises(DayWindowError, match="2 new rows fall outside"):
        run_models(
            con, models, {("lake", "calls"): first}, refresh={"stg_calls": frozenset({day_two})}
        )
    assert con.execute("select count(*) from stg_calls").fetchall() == [(4,)]
    with pytest.raises(ModelGraphError, match="only incremental_by_day models replace days"):
        run_models(con, models, {("lake", "calls"): first}, refresh={"total": frozenset({day_two})})


DOCS = """
models:
  - name: people
    tests:
      - expression_is_true: {expression: "age >= 0"}
      - unique_combination: {columns: [team, name]}
    columns:
      - name: name
        description: Who.
        tests: [not_null, unique]
      - name: team
        tests:
          - accepted_values: {values: [red, blue], severity: warn}
      - name: age
"""


def test_model_tests_pass_on_good_data_and_count_failures(tmp_path: Path) -> None:
    write_project(tmp_path, {}, DOCS)
    docs = load_model_docs(tmp_path / "models.yml")
    con = duckdb.connect()
    con.execute(
        "create table people as select * from (values ('ann', 'red', 30), ('bo', 'blue', 4))"
        " t(name, team, age)"
    )

    good = run_model_tests(con, "people", docs)
    assert [r.name for r in good] == [
        "not_null_people_name",
        "unique_people_name",
        "accepted_values_people_team",
        "expression_is_true_people_age_0",
        "unique_combination_people_team__name",
    ]
    assert all(r.passed and r.failing_rows == 0 for r in good)

    con.execute(
        "insert into people values (null, 'green', -1), ('ann', 'red', 1), ('cy', 'teal', null)"
    )
    bad = {r.name: r for r in run_model_tests(con, "people", docs)}
    assert {name: r.failing_rows for name, r in bad.items()} == {
        "not_null_people_name": 1,
        "unique_people_name": 2,
        "accepted_values_people_team": 2,
        "expression_is_true_people_age_0": 2,
        "unique_combination_people_team__name": 2,
    }
    assert not any(r.passed for r in bad.values())
    assert bad["accepted_values_people_team"].severity == "warn"
    assert bad["not_null_people_name"].column == "name"
    assert bad["expression_is_true_people_age_0"].description == "every row satisfies: age >= 0"
    assert run_model_tests(con, "undocumented", docs) == []


def test_unknown_test_names_model_and_test(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {},
        "models:\n  - name: people\n    columns:\n      - name: a\n        tests: [positive]\n",
    )
    with pytest.raises(ModelDocsError, match="model people: unknown test 'positive'"):
        load_model_docs(tmp_path / "models.yml")


def usage(
    at: datetime,
    request_id: str,
    cost_center: str,
    subscription_id: str,
    model: str,
    tokens: tuple[int, int, int],
    cost: str | None,
    deployment_type: str = "GlobalStandard",
    operation: str = "chat_completions",
) -> dict[str, Any]:
    """A usage_costs row; `tokens` is (prompt, cached, completion), `cost` None means unpriced."""
    prompt, cached, completion = tokens
    return {
        "request_id": request_id,
        "timestamp": at,
        "hour": at.strftime("%Y-%m-%d-%H:00"),
        "subscription_id": subscription_id,
        "cost_center": cost_center,
        "model": model,
        "deployment_type": deployment_type,
        "operation": operation,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "completion_tokens": completion,
        "reasoning_tokens": 0,
        "total_tokens": prompt + completion,
        "images": 0,
        "total_cost": None if cost is None else Decimal(cost),
        "currency": None if cost is None else "USD",
        "priced": cost is not None,
    }


def lake_frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows filled out to the table's full schema."""
    filled = [{name: row.get(name) for name in schema} for row in rows]
    return conform(pl.DataFrame(filled, schema=schema), schema)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


GPT4O = "gpt-4o-2024-08-06"
ROWS = [
    usage(at("2026-03-01T10:00:00"), "r1", "CC-1", "sub-a", GPT4O, (1000, 200, 500), "0.00725"),
    # late on the day in UTC: it stays on 03-01 whatever the session time zone
    usage(at("2026-03-01T23:59:59"), "r2", "CC-1", "sub-a", GPT4O, (100, 0, 50), "0.00075"),
    usage(at("2026-03-01T12:00:00"), "r3", "CC-1", "sub-a", GPT4O, (10, 0, 5), None),
    usage(
        at("2026-03-02T00:00:00"),
        "r4",
        UNALLOCATED,
        "sub-b",
        "text-embedding-3-small",
        (2000, 0, 0),
        "0.00004",
        operation="embeddings",
    ),
    usage(
        at("2026-03-02T08:00:00"), "r5", "CC-1", "sub-c", "mystery", (30, 0, 10), None, "Standard"
    ),
    usage(at("2026-04-01T00:30:00"), "r6", "CC-1", "sub-a", GPT4O, (60, 0, 40), "0.01"),
]


@pytest.fixture
def built() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'Asia/Tokyo'")
    quarantined = lake_frame(
        [{"source": "raw/x.ndjson", "hour": "2026-03-01-10:00", "reason": "not_json: bad"}],
        QUARANTINED_ENVELOPES,
    )
    sources: dict[tuple[str, str], object] = {
        ("lake", "usage_costs"): lake_frame(ROWS, USAGE_COSTS),
        ("lake", "quarantined_envelopes"): quarantined,
    }
    sources.update(shipped_seeds())
    runs = run_models(con, order_models(load_models(PROJECT)), sources, mart_variables({}))
    assert {run.name: run.rows for run in runs}["stg_usage_costs"] == len(ROWS)
    return con


def test_daily_totals(built: duckdb.DuckDBPyConnection) -> None:
    rows = built.execute(
        "select day::varchar, cost_center, subscription_id, model, requests, prompt_tokens,"
        " cached_tokens, completion_tokens, total_tokens, total_cost, currency, unpriced_requests"
        " from chargeback_daily order by day, cost_center, subscription_id"
    ).fetchall()
    assert rows == [
        ("2026-03-01", "CC-1", "sub-a", GPT4O, 3, 1110, 200, 555, 1665, Decimal("0.008"), "USD", 1),
        ("2026-03-02", "CC-1", "sub-c", "mystery", 1, 30, 0, 10, 40, None, None, 1),
        (
            "2026-03-02",
            UNALLOCATED,
            "sub-b",
            "text-embedding-3-small",
            1,
            2000,
            0,
            0,
            2000,
            Decimal("0.00004"),
            "USD",
            0,
        ),
        ("2026-04-01", "CC-1", "sub-a", GPT4O, 1, 60, 0, 40, 100, Decimal("0.01"), "USD", 0),
    ]


def test_monthly_totals(built: duckdb.DuckDBPyConnection) -> None:
    rows = built.execute(
        "select month, cost_center, requests, total_tokens, total_cost, currency,"
        " unpriced_requests, unpriced_tokens from chargeback_monthly order by month, cost_center"
    ).fetchall()
    assert rows == [
        ("2026-03", "CC-1", 4, 1705, Decimal("0.008"), "USD", 2, 55),
        ("2026-03", UNALLOCATED, 1, 2000, Decimal("0.00004"), "USD", 0, 0),
        ("2026-04", "CC-1", 1, 100, Decimal("0.01"), "USD", 0, 0),
    ]


def test_money_stays_decimal(built: duckdb.DuckDBPyConnection) -> None:
    types = dict(
        built.execute(
            "select table_name || '.' || column_name, data_type from information_schema.columns"
            " where column_name in ('total_cost', 'BilledCost', 'PricingQuantity')"
        ).fetchall()
    )
    assert set(types.values()) == {"DECIMAL(38,12)"}
    assert {"chargeback_daily.total_cost", "chargeback_monthly.total_cost"} <= set(types)


def test_focus_rows_reconcile_with_daily(built: duckdb.DuckDBPyConnection) -> None:
    billed, requests, periods = (
        built.execute(
            "select sum(BilledCost), sum(x_Requests),"
            " count(*) filter (where BillingPeriodStart = timestamptz '2026-03-01 00:00:00+00'"
            "   and BillingPeriodEnd = timestamptz '2026-04-01 00:00:00+00')"
            " from focus_costs"
        ).fetchone()
        or ()
    )
    assert (billed, requests, periods) == (Decimal("0.01804"), len(ROWS), 3)
    tags = built.execute(
        "select Tags::varchar from focus_costs where x_CostCenter = 'UNALLOCATED'"
    ).fetchall()
    assert tags == [('{"cost-center":"UNALLOCATED"}',)]


def test_shipped_model_tests_pass(built: duckdb.DuckDBPyConnection) -> None:
    docs = load_model_docs(PROJECT / "models.yml")
    failed = [
        (result.name, result.failing_rows)
        for name in docs
        for result in run_model_tests(built, name, docs)
        if not result.passed
    ]
    assert failed == []


def test_shipped_models_build_on_empty_tables() -> None:
    con = duckdb.connect()
    sources: dict[tuple[str, str], object] = {
        ("lake", "usage_costs"): empty_frame(USAGE_COSTS),
        ("lake", "quarantined_envelopes"): empty_frame(QUARANTINED_ENVELOPES),
        **{key: seed.clear() for key, seed in shipped_seeds().items()},
    }
    runs = run_models(con, order_models(load_models(PROJECT)), sources, mart_variables({}))
    assert {run.rows for run in runs} == {0}
    daily_columns = [
        name for name, _ in next(r for r in runs if r.name == "chargeback_daily").columns
    ]
    assert daily_columns[:12] == [
        "day",
        "cost_center",
        "subscription_id",
        "model",
        "deployment_type",
        "requests",
        "prompt_tokens",
        "cached_tokens",
        "completion_tokens",
        "total_tokens",
        "total_cost",
        "currency",
    ]
