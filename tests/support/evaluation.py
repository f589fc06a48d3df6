"""Evaluating context-file sources in the evaluation tests
(tests/context_loader/test_evaluate_*.py): a stand-in run, and what the tests read back."""
import textwrap

from context_loader.contextfile import ContextFile
from context_loader.evaluate import evaluate_run


class FakeRun:
    """Stands in for a DataCollection where the variables do not read the run."""


def load(code):
    return ContextFile.from_str("from damnit_ctx import *\n" + textwrap.dedent(code),
                                "context.py")


def run(code_or_ctx, run_number=1000, proposal=1234, **kw):
    ctx = load(code_or_ctx) if isinstance(code_or_ctx, str) else code_or_ctx
    return evaluate_run(ctx, FakeRun(), run_number, proposal, **kw)


def data(results):
    return {n: c.data for n, c in results.cells.items() if n != "start_time"}


def messages(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records]
