"""Code examples of the spec (shared/spec/backend.md) used by several test modules."""
from pathlib import Path

#: The spec's first example context (``context.py``): ``xgm_intensity`` and ``pulses``.
#: The project ships it as the context a new DAMNIT folder starts with.
FIRST_EXAMPLE = (Path(__file__).resolve().parent.parent / "damnit_dagster" / "templates"
                 / "context_example.py").read_text()
