"""Dagster wiring, autoloaded by definitions.py; logic lives in lib/."""
