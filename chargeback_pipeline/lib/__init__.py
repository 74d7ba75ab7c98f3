"""Pure domain code: no Dagster imports, I/O only at the named edges (delta, reference)."""
