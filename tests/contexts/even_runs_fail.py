"""Three variables for reprocessing tests: the run number, the XGM intensity, and one
that fails on even runs."""
from extra.components import XGM

from damnit_ctx import Variable


@Variable(title="Run")
def run_no(run, n: "meta#run_number"):
    return n

@Variable(title="XGM intensity", summary="mean")
def xgm_intensity(run):
    return XGM(run).pulse_energy().mean("pulseIndex")

@Variable(title="Odd only")
def odd_only(run, n: "var#run_no"):
    if n % 2 == 0:
        raise ValueError(f"run {n} is even")
    return n
