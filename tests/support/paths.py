"""Where things are, for tests in any folder under ``tests/``."""
from pathlib import Path

#: ``tests/support``: the helpers (some are run as scripts).
SUPPORT = Path(__file__).resolve().parent
#: ``tests``
TESTS = SUPPORT.parent
#: The repository's root (``workspace.yaml``, ``dagster_home/``, ``scripts/``).
REPO = TESTS.parent
#: Context files the tests use as they are.
CONTEXTS = TESTS / "contexts"
#: Context files that must fail to load, each with the error a user must see.
MALFORMED_CONTEXTS = TESTS / "malformed_contexts"
