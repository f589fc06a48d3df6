"""Realistic mock EuXFEL proposals for tests, demos and benchmarks.

Writes EXDF (HDF5, format 1.3) runs with ``extra_data.tests.mockdata`` that
``extra_data.open_run`` and the EXtra components (``XGM``, ``XrayPulses``,
``Scantool``) read like real data::

    {root}/{instrument}/{cycle}/p{proposal:06d}/
        raw/r0001/RAW-R0001-DA01-S00000.h5      XGM, timeserver, motor, scantool
        raw/r0001/RAW-R0001-AGIPD00-S00000.h5   AGIPD module 0 (zeros)
        proc/r0001/CORR-R0001-AGIPD00-S00000.h5 corrected AGIPD (a ring image)
        usr/Shared/amore/                       where DAMNIT keeps its files
        usr/extra-data-aliases.yml

Point ``EXTRA_DATA_DATA_ROOT`` (extra_data) and ``XFEL_DATA_ROOT`` (DAMNIT) at
``root``. Every value depends only on ``(seed, run)``, including train IDs and
timestamps, so regenerated runs are identical; :func:`run_design` tells what a
run contains without reading it.

Each run directory is written under a temporary name and renamed when
complete, so an existing ``raw/rNNNN`` or ``proc/rNNNN`` is complete and is
never rewritten. Calling :func:`make_run` with ``with_proc=False`` and later
with ``with_proc=True`` simulates calibration finishing after migration.

Command line: ``python -m damnit_dagster.ops.mockdata --root R --proposal 1234 --runs 1-5,8``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
from euxfel_bunch_pattern import DESTINATION_T5D
from extra_data.tests.mockdata import write_file
from extra_data.tests.mockdata.base import DeviceBase
from extra_data.tests.mockdata.detectors import AGIPDModule
from extra_data.tests.mockdata.motor import Motor

__all__ = [
    "RunDesign", "run_design", "make_run", "make_proposal", "proposal_dir", "parse_runs",
    "XGM_SOURCE", "TIMESERVER_SOURCE", "MOTOR_SOURCE", "SCANTOOL_SOURCE",
    "AGIPD_RAW_SOURCE", "AGIPD_PROC_SOURCE", "ALIASES",
]

XGM_SOURCE = "SA2_XTD1_XGM/XGM/DOOCS"
TIMESERVER_SOURCE = "MID_RR_SYS/TSYS/TIMESERVER"
MOTOR_SOURCE = "MID_EXP_SAM/MOTOR/SAMX"
SCANTOOL_SOURCE = "MID_RR_SYS/MDL/KARABACON"
AGIPD_RAW_SOURCE = "MID_DET_AGIPD1M-1/DET/0CH0:xtdf"
AGIPD_PROC_SOURCE = "MID_DET_AGIPD1M-1/CORR/0CH0:output"

#: Aliases written to ``usr/extra-data-aliases.yml``.
ALIASES = {
    "sa2-xgm": XGM_SOURCE,
    "samx": MOTOR_SOURCE,
    "samx-pos": [MOTOR_SOURCE, "actualPosition"],
}

FIRST_START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
RUN_SPACING_S = 600          # run N starts at FIRST_START + N * 10 min
TRAIN_PERIOD_NS = 100_000_000  # 10 Hz
WAVELENGTH_NM = 0.1378       # about 9 keV photons
SCAN_STEPS = 10
DET_FRAMES = 2               # AGIPD frames per train
DET_FILLED_TRAINS = 10       # proc trains holding the ring image; the rest are zeros

_STR = h5py.string_dtype()


class _XGM(DeviceBase):
    """A DOOCS XGM with the keys ``extra.components.XGM`` reads."""
    extra_run_values = [("classId", None, "DoocsXGM"), ("location", None, "XGM.2595.T6")]
    control_keys = [
        ("controlData/slowTrain", "f4", ()),
        ("pulseEnergy/numberOfBunchesActual", "f4", ()),
        ("pulseEnergy/photonFlux", "f4", ()),
        ("pulseEnergy/wavelengthUsed", "f4", ()),
    ]
    output_channels = ("output/data",)
    instrument_keys = [("intensityTD", "f4", (1000,))]


class _Timeserver(DeviceBase):
    """A timeserver publishing the bunch pattern table (``XrayPulses``)."""
    extra_run_values = [("classId", None, "TimeServer")]
    control_keys = [("bunchPatternTable", "u4", (2700,)), ("periodActual", "f8", ())]
    output_channels = ("outputBunchPattern/data",)
    instrument_keys = [("bunchPatternTable", "u4", (2700,))]


class _Karabacon(DeviceBase):
    """The Karabacon scan tool (``extra.components.Scantool``)."""
    extra_run_values = [("classId", None, "Karabacon")]
    control_keys = [
        ("isMoving", "u1", ()),
        ("deviceEnv/acquisitionMode", _STR, ()),
        ("deviceEnv/acquisitionTime", "f8", ()),
        ("deviceEnv/activeMotors", _STR, (4,)),
        ("scanEnv/scanType", _STR, ()),
        ("scanEnv/steps", "i4", (4,)),
        ("scanEnv/startPoints", "f8", (4,)),
        ("scanEnv/stopPoints", "f8", (4,)),
        ("actualConfiguration", _STR, ()),
    ]


@dataclass(frozen=True)
class RunDesign:
    """What a mock run contains (the values :func:`make_run` writes)."""
    run: int
    npulses: int              # X-ray pulses per train (XGM and timeserver agree)
    pulse_energy_uj: float    # mean XGM pulse energy; per-pulse sigma is 60 uJ
    first_train: int
    start_time: datetime      # timestamp of the first train (UTC)
    samx: float               # motor position (scan runs: -1..1 in SCAN_STEPS steps)


def run_design(run: int, seed: int = 0) -> RunDesign:
    """The designed values of run ``run`` for ``seed``."""
    rng = _rng(seed, run, 0)
    return RunDesign(
        run=run,
        npulses=int(rng.integers(1, 100)),
        pulse_energy_uj=800.0 + 5.0 * run,
        first_train=1_500_000_000 + run * 100_000,
        start_time=datetime.fromtimestamp(FIRST_START.timestamp() + RUN_SPACING_S * run,
                                          UTC),
        samx=float(np.round(rng.uniform(-5, 5), 3)),
    )


def proposal_dir(root, proposal: int, instrument: str = "MID", cycle: str = "202501") -> Path:
    """``{root}/{instrument}/{cycle}/p{proposal:06d}`` as extra_data expects it."""
    return Path(root) / instrument / cycle / f"p{proposal:06d}"


def make_run(proposal_dir, proposal: int, run: int, *, ntrains: int = 100,
             scan: bool = False, with_proc: bool = True, seed: int = 0) -> RunDesign:
    """Write raw (and proc) data of one run under ``proposal_dir``; returns its design.

    A run directory that already exists is left untouched, so this is cheap to
    repeat and can add ``proc`` to a run written earlier without it.
    """
    pdir = Path(proposal_dir)
    design = run_design(run, seed)
    raw_dir = pdir / "raw" / f"r{run:04d}"
    proc_dir = pdir / "proc" / f"r{run:04d}"
    if not raw_dir.exists():
        with _staging(raw_dir) as tmp:
            _write_raw(tmp, proposal, design, ntrains, scan, seed)
    if with_proc and not proc_dir.exists():
        with _staging(proc_dir) as tmp:
            _write_proc(tmp, proposal, design, ntrains, seed)
    return design


def make_proposal(root, proposal: int = 1234, runs=range(1, 6), *, instrument: str = "MID",
                  cycle: str = "202501", ntrains: int = 100, seed: int = 0,
                  scan_runs=None, runs_without_proc=None, progress=None) -> Path:
    """Write a proposal tree with ``runs`` and return the proposal directory.

    ``scan_runs`` / ``runs_without_proc`` default to every 3rd / every 10th run
    number. ``progress(done, total, run)`` is called after each run.
    """
    runs = list(runs)
    scan_runs = {r for r in runs if r % 3 == 0} if scan_runs is None else set(scan_runs)
    no_proc = {r for r in runs if r % 10 == 0} if runs_without_proc is None \
        else set(runs_without_proc)
    pdir = proposal_dir(root, proposal, instrument, cycle)
    amore = pdir / "usr" / "Shared" / "amore"
    amore.mkdir(parents=True, exist_ok=True)
    aliases = pdir / "usr" / "extra-data-aliases.yml"
    if not aliases.exists():
        aliases.write_text("".join(f"{k}: {_yaml(v)}\n" for k, v in ALIASES.items()))
    for i, run in enumerate(runs, 1):
        make_run(pdir, proposal, run, ntrains=ntrains, scan=run in scan_runs,
                 with_proc=run not in no_proc, seed=seed)
        if progress is not None:
            progress(i, len(runs), run)
    return pdir


def parse_runs(text: str) -> list[int]:
    """Parse run lists like ``"1-5,8"`` into ``[1, 2, 3, 4, 5, 8]``."""
    runs: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                runs.extend(range(lo, hi + 1))
            else:
                runs.append(int(part))
        except ValueError:
            raise ValueError(f"bad run range {part!r} in {text!r} (expected e.g. 1-5,8)") \
                from None
    return sorted(set(runs))


# --- writing -----------------------------------------------------------------

def _rng(seed: int, run: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, run, stream])


class _staging:
    """Build a directory under a temporary sibling name; rename it into place on success."""

    def __init__(self, final: Path):
        self.final = final

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.tmp.chmod(0o755)
            try:
                self.tmp.rename(self.final)
                return False
            except OSError:
                if not self.final.exists():  # someone else finished it first: fine
                    raise
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def _write_raw(run_dir: Path, proposal: int, d: RunDesign, ntrains: int, scan: bool,
               seed: int):
    rng = _rng(seed, d.run, 1)
    fn = run_dir / f"RAW-R{d.run:04d}-DA01-S00000.h5"
    devices = [_XGM(XGM_SOURCE), _Timeserver(TIMESERVER_SOURCE), Motor(MOTOR_SOURCE),
               _Karabacon(SCANTOOL_SOURCE)]
    write_file(str(fn), devices, ntrains, firsttrain=d.first_train, chunksize=ntrains,
               format_version="1.3")
    with h5py.File(fn, "a") as f:
        # XGM: per-pulse energies in uJ; the slots after the last pulse hold 1.0,
        # which is how extra.components.XGM counts pulses.
        energy = rng.normal(d.pulse_energy_uj, 60, size=(ntrains, d.npulses)).astype("f4")
        td = np.ones((ntrains, 1000), "f4")
        td[:, :d.npulses] = energy
        f[f"INSTRUMENT/{XGM_SOURCE}:output/data/intensityTD"][:] = td
        _fill(f, XGM_SOURCE, "pulseEnergy/numberOfBunchesActual", np.full(ntrains, d.npulses))
        _fill(f, XGM_SOURCE, "pulseEnergy/wavelengthUsed", np.full(ntrains, WAVELENGTH_NM))
        _fill(f, XGM_SOURCE, "pulseEnergy/photonFlux", energy.mean(1))
        _fill(f, XGM_SOURCE, "controlData/slowTrain", energy.mean(1))

        # Timeserver: SASE2 (MID) pulses every 8 bunches from bunch 1500.
        table = np.zeros((ntrains, 2700), "u4")
        table[:, 1500:1500 + 8 * d.npulses:8] |= DESTINATION_T5D
        f[f"INSTRUMENT/{TIMESERVER_SOURCE}:outputBunchPattern/data/bunchPatternTable"][:] = table
        _fill(f, TIMESERVER_SOURCE, "bunchPatternTable", table)
        _fill(f, TIMESERVER_SOURCE, "periodActual", np.full(ntrains, 0.1))

        # Motor: parked, or a SCAN_STEPS-step scan from -1 to 1 driven by the scan tool.
        if scan:
            step = np.minimum(np.arange(ntrains) * SCAN_STEPS // ntrains, SCAN_STEPS - 1)
            pos = np.linspace(-1, 1, SCAN_STEPS)[step]
            moving = np.r_[0, np.diff(step) != 0].astype("u1")
        else:
            pos = np.full(ntrains, d.samx)
            moving = np.zeros(ntrains, "u1")
        _fill(f, MOTOR_SOURCE, "actualPosition", pos)
        _fill(f, MOTOR_SOURCE, "targetPosition", pos)

        _fill(f, SCANTOOL_SOURCE, "isMoving", moving)
        _fill(f, SCANTOOL_SOURCE, "deviceEnv/acquisitionMode", ["Continuous Averaged"] * ntrains)
        _fill(f, SCANTOOL_SOURCE, "deviceEnv/acquisitionTime", np.full(ntrains, 1.0))
        _fill(f, SCANTOOL_SOURCE, "deviceEnv/activeMotors", [["samx", "", "", ""]] * ntrains)
        _fill(f, SCANTOOL_SOURCE, "scanEnv/scanType", ["dscan"] * ntrains)
        _fill(f, SCANTOOL_SOURCE, "scanEnv/steps", [[SCAN_STEPS, 1, 1, 1]] * ntrains)
        _fill(f, SCANTOOL_SOURCE, "scanEnv/startPoints", [[-1.0, 0, 0, 0]] * ntrains)
        _fill(f, SCANTOOL_SOURCE, "scanEnv/stopPoints", [[1.0, 0, 0, 0]] * ntrains)
        config = f"--- Motors: ['{MOTOR_SOURCE}:default']--- Data Sources: []--- Triggers: []"
        _fill(f, SCANTOOL_SOURCE, "actualConfiguration", [config] * ntrains)
        _fix_metadata(f, proposal, d, scan)

    fn = run_dir / f"RAW-R{d.run:04d}-AGIPD00-S00000.h5"
    write_file(str(fn), [AGIPDModule(AGIPD_RAW_SOURCE.split(":")[0],
                                     frames_per_train=DET_FRAMES)],
               ntrains, firsttrain=d.first_train, chunksize=ntrains, format_version="1.3")
    with h5py.File(fn, "a") as f:
        _fix_metadata(f, proposal, d, scan)


def _write_proc(run_dir: Path, proposal: int, d: RunDesign, ntrains: int, seed: int):
    """Corrected AGIPD module 0: the first trains show a ring (radius 40 px) plus noise."""
    rng = _rng(seed, d.run, 2)
    fn = run_dir / f"CORR-R{d.run:04d}-AGIPD00-S00000.h5"
    module = AGIPDModule(AGIPD_PROC_SOURCE.split(":")[0], frames_per_train=DET_FRAMES,
                         raw=False, channel_name="output")
    write_file(str(fn), [module], ntrains, firsttrain=d.first_train, chunksize=ntrains,
               format_version="1.3")
    with h5py.File(fn, "a") as f:
        n = min(DET_FILLED_TRAINS, ntrains) * DET_FRAMES
        yy, xx = np.mgrid[:512, :128]
        ring = np.exp(-((np.hypot(yy - 256, xx - 64) - 40) / 6) ** 2).astype("f4")
        noise = rng.normal(0, 2, (n, 512, 128)).astype("f4")
        f[f"INSTRUMENT/{AGIPD_PROC_SOURCE}/image/data"][:n] = ring * (50 + d.run) + noise
        _fix_metadata(f, proposal, d, scan=False)


def _fill(f: h5py.File, source: str, key: str, values, run_value=None):
    """Set a CONTROL key per train and its RUN value (the first train's by default)."""
    values = np.asarray(values)
    if values.dtype.kind == "U":  # h5py writes variable-length strings from objects
        values = values.astype(object)
    f[f"CONTROL/{source}/{key}/value"][:] = values
    f[f"CONTROL/{source}/{key}/timestamp"][:] = 0
    run_ds = f.get(f"RUN/{source}/{key}/value")
    if run_ds is not None:
        run_ds[0] = values[0] if run_value is None else run_value


def _fix_metadata(f: h5py.File, proposal: int, d: RunDesign, scan: bool):
    """Replace mockdata's fixed proposal 700000 and wall-clock times with the design."""
    f["METADATA/proposalNumber"][0] = proposal
    t0_ns = int(d.start_time.timestamp()) * 10**9
    ts = f["INDEX/timestamp"]
    ts[:] = t0_ns + np.arange(len(ts), dtype=np.uint64) * TRAIN_PERIOD_NS
    stamp = d.start_time.strftime("%Y%m%dT%H%M%SZ").encode()
    f["METADATA/creationDate"][0] = stamp
    f["METADATA/updateDate"][0] = stamp
    f["METADATA/runType"][0] = b"Scan" if scan else b"Test DAQ"
    f["METADATA/sample"][0] = b"Mock sample"


def _yaml(value) -> str:
    return f"[{', '.join(value)}]" if isinstance(value, list) else value


# --- command line --------------------------------------------------------------

def main(argv=None) -> int:
    """``python -m damnit_dagster.ops.mockdata``: write a mock proposal and say where it is."""
    ap = argparse.ArgumentParser(prog="python -m damnit_dagster.ops.mockdata",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="data root (EXTRA_DATA_DATA_ROOT)")
    ap.add_argument("--proposal", type=int, default=1234)
    ap.add_argument("--runs", default="1-5", help="run numbers, e.g. 1-5,8 (default 1-5)")
    ap.add_argument("--instrument", default="MID")
    ap.add_argument("--cycle", default="202501")
    ap.add_argument("--trains", type=int, default=100, help="trains per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan-runs", help="runs that are scans (default: every 3rd)")
    ap.add_argument("--no-proc-runs", help="runs without proc data (default: every 10th)")
    a = ap.parse_args(argv)
    try:
        runs = parse_runs(a.runs)
        scan_runs = parse_runs(a.scan_runs) if a.scan_runs else None
        no_proc = parse_runs(a.no_proc_runs) if a.no_proc_runs else None
    except ValueError as e:
        ap.error(str(e))

    t = time.perf_counter()
    tty = sys.stdout.isatty()

    def progress(done, total, run):
        end = "\r" if tty and done < total else "\n"
        print(f"runs written: {done}/{total} (r{run:04d}, {time.perf_counter() - t:.1f} s)",
              end=end, flush=True)

    pdir = make_proposal(Path(a.root).absolute(), a.proposal, runs, instrument=a.instrument,
                         cycle=a.cycle, ntrains=a.trains, seed=a.seed, scan_runs=scan_runs,
                         runs_without_proc=no_proc, progress=progress)
    print(f"proposal {a.proposal}: {pdir}")
    print(f"export EXTRA_DATA_DATA_ROOT={Path(a.root).absolute()} "
          f"XFEL_DATA_ROOT={Path(a.root).absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
