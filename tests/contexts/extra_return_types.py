"""Return types the 25-variable baseline context does not cover, for the equivalence
check against DAMNIT 0.4.0 (tests/test_equivalence_damnit.py appends this file to
benchmarks/contexts/context_25vars.py)."""
import numpy as np
import xarray as xr
from damnit_ctx import Variable, Cell
from extra.components import XGM


@Variable(title="Long run")
def is_long(run):
    return len(run.train_ids) > 50


@Variable(title="Complex")
def complex_value(run, n: "meta#run_number"):
    return complex(1.5 * n, -2.0)


@Variable(title="Cube")
def cube(run, n: "meta#run_number"):
    return np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2) * n


@Variable(title="Cube mean", summary="mean")
def cube_summary(run, n: "meta#run_number"):
    return np.arange(4 * 3 * 2, dtype=np.float64).reshape(4, 3, 2) * n


@Variable(title="Styled cell", units="ignored")
def styled_cell(run, xgm: "var#xgm_intensity"):
    return Cell(xgm, summary="max", bold=True, background="#ffcc00", units="µJ")


@Variable(title="RGB cell")
def rgb_cell(run, n: "meta#run_number"):
    return Cell(n * 10, background=(10, 200, 30), bold=False)


@Variable(title="Labels")
def labels(run):
    return xr.DataArray(np.array(["low", "mid", "high"]), dims="level",
                        coords={"level": [0, 1, 2]})


@Variable(title="Trend")
def trend(run, n: "meta#run_number"):
    return np.sin(np.linspace(0, 20, 1000)) * n


@Variable(title="Trend DataArray", units="uJ")
def trend_da(run, xgm: "var#xgm_intensity"):
    return xgm


@Variable(title="Image array")
def image_array(run, n: "meta#run_number"):
    return np.outer(np.arange(40.0), np.arange(60.0)) * n


@Variable(title="Scalars list")
def scalars_list(run):
    return [1.5, 2.5, 4.0]


@Variable(title="numpy scalar")
def np_scalar(run):
    return np.float32(2.5)


@Variable(title="numpy int")
def np_int(run):
    return np.int64(len(run.train_ids))


@Variable(title="Axes")
def axes_plot(run, xgm: "var#xgm_intensity"):
    from matplotlib.figure import Figure
    ax = Figure(figsize=(3, 3)).add_subplot()
    ax.plot(xgm.values)
    return ax


@Variable(title="Summary string cell")
def summary_string(run, n: "meta#run_number"):
    return Cell(np.arange(10.0) * n, summary_value=f"run {n}")


@Variable(title="Photon energy (mean) [keV]", summary="mean")
def photon_energy_units(run):
    return XGM(run).photon_energy(with_units=False)
