"""Reprocessing runs: a backfill of the running backend, or done by the command itself."""
