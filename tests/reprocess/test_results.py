"""What a reprocess reports for runs that got no result."""
import dagster as dg

from damnit_dagster.reprocess.results import ResultCollector, RunResult, report, was_interrupted


class _CtrlCWhileStarting(dg.ConfigurableResource):
    """Ctrl-C while the run sets up, before any step starts."""

    def setup_for_execution(self, context) -> None:
        raise KeyboardInterrupt


@dg.asset
def _never_computed(ctrl_c: _CtrlCWhileStarting) -> None:
    raise AssertionError("the step never starts")


def test_a_dagster_run_interrupted_outside_its_steps_leaves_its_runs_reported_interrupted():
    job = dg.Definitions(assets=[_never_computed], jobs=[dg.define_asset_job("j")],
                         resources={"ctrl_c": _CtrlCWhileStarting()}).resolve_job_def("j")
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert was_interrupted(result)
        assert not result.get_step_failure_events()   # no step said it
        results = ResultCollector(4570, [1, 2]).update(instance, [result.run_id])
    lines, not_processed = report(results, [], 4570)
    assert lines == ["r1, r2: not processed: interrupted (Ctrl-C, or its Dagster run was "
                     "terminated)", "p4570: 0 of 2 runs processed, 0 variable failure(s)"]
    assert not_processed == [1, 2]


def test_a_run_without_any_result_or_reason_is_still_named_as_not_processed():
    results = {1: RunResult(1, ok=["a"]), 2: RunResult(2)}
    lines, not_processed = report(results, [], 4570)
    assert lines[0].startswith("r2: not processed: no result came back")
    assert not_processed == [2]
