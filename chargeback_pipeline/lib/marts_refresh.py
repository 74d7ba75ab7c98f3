"""Decide what a marts build does: rebuild everything, replace the days whose lake partitions
changed since the recorded build (and rebuild what depends on them whole), or nothing."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from chargeback_pipeline.lib.marts_lake import FullRebuildNeeded, PinnedTable, changed_days
from chargeback_pipeline.lib.marts_state import BuildState, SourceVersion
from chargeback_pipeline.lib.sql_models import Refresh, SqlModel

Mode = Literal["full", "incremental", "unchanged"]
SourceKey = tuple[str, str]


@dataclass(frozen=True)
class RefreshPlan:
    """The build's mode, why, the days replaced and what happens to each model (full: all
    rebuilt, so `refresh` is empty)."""

    mode: Mode
    reason: str
    days: frozenset[date] = frozenset()
    refresh: dict[str, Refresh] = field(default_factory=dict)


def full(reason: str) -> RefreshPlan:
    """A plan to rebuild every model from the whole lake."""
    return RefreshPlan("full", reason)


def source_name(key: SourceKey) -> str:
    """`lake.usage_costs` for `("lake", "usage_costs")`."""
    return ".".join(key)


def source_versions(pinned: Mapping[SourceKey, PinnedTable]) -> tuple[SourceVersion, ...]:
    """What to record of the pinned lake tables."""
    return tuple(
        SourceVersion(source_name(key), table.uri, table.table_id, table.version)
        for key, table in sorted(pinned.items())
    )


def plan_refresh(
    models: list[SqlModel],
    recorded: BuildState | None,
    current: BuildState,
    pinned: Mapping[SourceKey, PinnedTable],
    existing_tables: Collection[str],
    storage_options: dict[str, str] | None = None,
    full_refresh: bool = False,
) -> RefreshPlan:
    """Compare the recorded build with the current models and lake; see the ADR 0005 for when
    this falls back to a full rebuild."""
    if full_refresh:
        return full("full refresh requested")
    if recorded is None:
        return full("no earlier build recorded in the marts file")
    if recorded.fingerprint != current.fingerprint:
        return full("models, models.yml, seeds or vars changed since the last build")
    missing = sorted(model.name for model in models if model.name not in existing_tables)
    if missing:
        return full(f"tables missing from the marts file: {missing}")
    blocker = incremental_blocker(models, set(pinned))
    if blocker:
        return full(blocker)
    try:
        changes = lake_changes(recorded, pinned, storage_options)
    except FullRebuildNeeded as error:
        return full(str(error))
    days = frozenset().union(*changes.values())
    if not days:
        keep: dict[str, Refresh] = {model.name: "keep" for model in models}
        return RefreshPlan(
            "unchanged", "no lake partition changed since the last build", refresh=keep
        )
    touched = downstream(models, {key for key, changed in changes.items() if changed})
    refresh: dict[str, Refresh] = {
        model.name: (days if model.incremental else "rebuild") if model.name in touched else "keep"
        for model in models
    }
    return RefreshPlan("incremental", f"{len(days)} changed day(s) replaced", days, refresh)


def lake_changes(
    recorded: BuildState,
    pinned: Mapping[SourceKey, PinnedTable],
    storage_options: dict[str, str] | None = None,
) -> dict[SourceKey, frozenset[date]]:
    """Per lake table, the days whose partitions changed since the recorded versions."""
    before = {version.source: version for version in recorded.sources}
    if set(before) != {source_name(key) for key in pinned}:
        raise FullRebuildNeeded("the models read other lake tables than at the last build")
    changes: dict[SourceKey, frozenset[date]] = {}
    for key, table in pinned.items():
        old = before[source_name(key)]
        if old.uri != table.uri:
            raise FullRebuildNeeded(f"{source_name(key)} moved from {old.uri} to {table.uri}")
        changes[key] = changed_days(table, old.version, old.table_id, storage_options)
    return changes


def downstream(models: list[SqlModel], sources: Collection[SourceKey]) -> set[str]:
    """Names of the models that read any of `sources`, directly or through refs."""
    reached: set[str] = set()
    for model in models:  # dependency order: refs are decided before the models using them
        if set(model.sources) & set(sources) or reached.intersection(model.refs):
            reached.add(model.name)
    return reached


def incremental_blocker(models: list[SqlModel], lake: Collection[SourceKey]) -> str | None:
    """Why these models cannot be refreshed by day, if they cannot: a table model reading the
    lake directly needs all of it, and an incremental model must not read a lake-derived model
    that is rebuilt whole (its other days may have changed too)."""
    from_lake = downstream(models, lake)
    for model in models:
        if model.incremental:
            whole = [
                ref for ref in model.refs if ref in from_lake and not _is_incremental(models, ref)
            ]
            if whole:
                return f"{model.name} is incremental_by_day but refs {whole}, rebuilt whole"
        elif set(model.sources) & set(lake):
            return f"{model.name} reads the lake directly without being incremental_by_day"
    return None


def _is_incremental(models: list[SqlModel], name: str) -> bool:
    return any(model.name == name and model.incremental for model in models)
