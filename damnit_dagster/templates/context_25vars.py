"""The 25-variable context of research xfel-data.md section 3.2 (used as DAMNIT 0.4.0's
baseline): the spec's two variables plus meta/var chains, a default-valued dependency, a
transient, Skip, proc image + dependent, a figure, a string, a Dataset, a Cell, None, a
deliberate error and its dependent, and a missing source."""
import numpy as np
import xarray as xr
from extra.components import XGM, Scantool, XrayPulses

from damnit_ctx import Cell, Skip, Variable

MOTOR = 'MID_EXP_SAM/MOTOR/SAMX'
AGIPD = 'MID_DET_AGIPD1M-1/CORR/0CH0:output'

@Variable(title="XGM intensity [uJ]", summary="mean", tags=["xgm", "beam"])
def xgm_intensity(run):
    """Mean XGM intensity per-train."""
    return XGM(run).pulse_energy().mean("pulseIndex")

@Variable(title="Pulses", summary="mean", tags="beam")
def pulses(run):
    """Number of pulses in the run."""
    return XrayPulses(run).pulse_counts().to_xarray()

@Variable(title="Run")
def run_no(run, n: "meta#run_number"):
    return n

@Variable(title="Proposal")
def proposal_no(run, p: "meta#proposal"):
    return p

@Variable(title="Proposal path")
def proposal_path(run, p: "meta#proposal_path"):
    return str(p)

@Variable(title="Trains")
def n_trains(run):
    return len(run.train_ids)

@Variable(title="Photon energy [keV]")
def photon_energy(run):
    return XGM(run).photon_energy(with_units=False)

@Variable(title="Total energy [mJ]")
def total_energy(run, xgm: "var#xgm_intensity", npulses: "var#pulses"):
    return float((xgm * npulses).sum() / 1000)

@Variable(title="XGM std [uJ]")
def xgm_std(run, xgm: "var#xgm_intensity"):
    return float(xgm.std())

@Variable(title="Sample X [mm]", summary="mean")
def samx(run):
    return run[MOTOR, 'actualPosition'].xarray()

@Variable(title="Scan motor")
def scan_motor(run):
    s = Scantool(run)
    if not s.active:
        raise Skip("Run is not a scan")
    return s.motors[0]

@Variable(title="XGM per scan step", summary="max")
def xgm_per_step(run, xgm: "var#xgm_intensity", motor: "var#scan_motor"):
    pos = run[MOTOR, 'actualPosition'].xarray().round(3)
    return xgm.groupby(pos.rename("position")).mean()

@Variable(title="Detector preview", data="proc")
def agipd_preview(run):
    img = run[AGIPD, 'image.data'][:20].ndarray()   # first 20 frames
    return xr.DataArray(img.mean(axis=0), dims=("slow_scan", "fast_scan"))

@Variable(title="Detector mean", data="proc", summary="mean")
def agipd_mean(run, img: "var#agipd_preview"):
    return float(img.mean())

@Variable(title="XGM histogram")
def xgm_hist(run, xgm: "var#xgm_intensity"):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.hist(xgm.values, bins=20)
    ax.set_xlabel("uJ")
    return fig

@Variable(title="Status")
def status(run, xgm: "var#xgm_intensity"):
    return "OK" if float(xgm.mean()) > 810 else "low"

@Variable(title="Broken")
def broken(run):
    raise RuntimeError("deliberate failure")

@Variable(title="After broken")
def after_broken(run, x: "var#broken"):
    return x

@Variable(title="Default dep")
def default_dep(run, x: "var#broken" = 42):
    return x

@Variable(title="Missing source")
def missing_source(run):
    return run['SA1_XTD2_XGM/XGM/DOOCS', 'pulseEnergy.photonFlux'].ndarray()

@Variable(title="Positions (transient)", transient=True)
def raw_pos(run):
    return run[MOTOR, 'actualPosition'].ndarray()

@Variable(title="Position range")
def pos_range(run, pos: "var#raw_pos"):
    return float(np.ptp(pos))

@Variable(title="Beam dataset")
def beam_ds(run, xgm: "var#xgm_intensity", npulses: "var#pulses"):
    return xr.Dataset({"xgm": xgm, "pulses": npulses})

@Variable(title="Cell with preview")
def cell_preview(run):
    arr = np.arange(5 * 4 * 3, dtype=float).reshape(5, 4, 3)
    return Cell(arr, preview=arr[0], summary_value=arr.sum())

@Variable(title="Empty")
def returns_none(run):
    return None
