"""The context of the reprocessing tests (``contexts/odd_only.py``) and what it must give."""
from pathlib import Path

#: ``run_no``, ``xgm_intensity`` and ``odd_only``, which fails on even runs.
CONTEXT = Path(__file__).parent / "contexts" / "odd_only.py"


def assert_results(results: dict, runs) -> None:
    """Every run has its values, except ``odd_only`` of even runs, which failed."""
    assert sorted(results) == sorted(runs)
    for run, result in results.items():
        assert {"run_no", "xgm_intensity"} <= set(result.ok), (run, result)
        if run % 2:
            assert "odd_only" in result.ok
        else:
            assert result.failed["odd_only"] == f"failed: ValueError: run {run} is even"
