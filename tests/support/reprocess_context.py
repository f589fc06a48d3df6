"""The context of the reprocessing tests (``contexts/even_runs_fail.py``) and what it must
give."""
from support.paths import CONTEXTS

#: ``run_no``, ``xgm_intensity`` and ``odd_only``, which fails on even runs.
CONTEXT = CONTEXTS / "even_runs_fail.py"


def assert_results(results: dict, runs) -> None:
    """Every run has its values, except ``odd_only`` of even runs, which failed."""
    assert sorted(results) == sorted(runs)
    for run, result in results.items():
        assert {"run_no", "xgm_intensity"} <= set(result.ok), (run, result)
        if run % 2:
            assert "odd_only" in result.ok
        else:
            assert result.failed["odd_only"] == f"failed: ValueError: run {run} is even"
