"""Load, validate and evaluate DAMNIT context files. Pure Python: no Dagster here."""
