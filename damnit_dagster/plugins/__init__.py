"""Dagster instance plug-ins loaded from dagster.yaml, and where each folder's instance lives.

The only package that imports Dagster's private modules, all through :mod:`.dagster_private`."""
