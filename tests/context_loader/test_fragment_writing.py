"""write_fragment: written atomically and group-writable, failures that lose only what
failed, and writing without matplotlib, plotly or fpcs installed."""
import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import xarray as xr

from context_loader.cells import Cell
from context_loader.fragment import write_fragment
from support.images import png_size


def test_written_atomically_group_writable(tmp_path):
    path = write_fragment(tmp_path / "frag.h5", {"x": Cell(1)}, {})
    assert path == tmp_path / "frag.h5"
    assert os.listdir(tmp_path) == ["frag.h5"]
    assert path.stat().st_mode & 0o777 == 0o666
    with h5py.File(path) as f:
        assert list(f.attrs["cleared"]) == []
        assert set(f) == {".errors", ".preview", ".reduced", "x"}


def test_failed_write_leaves_nothing(tmp_path):
    class Boom(BaseException):
        pass

    class Exploding:
        data = np.arange(3)
        summary_value = preview = None

        def get_summary(self, log_name):
            raise Boom()

    with pytest.raises(Boom):
        write_fragment(tmp_path / "frag.h5", {"x": Exploding()}, {})
    assert os.listdir(tmp_path) == []


def test_unsavable_data_becomes_that_variables_error(tmp_path):
    bad = xr.DataArray(np.array([{"a": 1}, None], dtype=object), dims=["x"])
    path = write_fragment(tmp_path / "frag.h5",
                          {"bad": Cell(bad), "good": Cell(np.arange(3))}, {})
    with h5py.File(path) as f:
        assert "bad" not in f and "bad" not in f[".reduced"]
        assert f[".errors/bad"][()].decode().startswith(
            "The result (DataArray) could not be saved: ")
        assert f[".errors/bad"].attrs["type"]
        assert f["good/data"][()].tolist() == [0, 1, 2]


def test_unstorable_summary_loses_only_the_summary(tmp_path, caplog):
    # np.ndenumerate(data) is a Python object, which HDF5 cannot store
    path = write_fragment(tmp_path / "frag.h5",
                          {"x": Cell(np.arange(3), summary="ndenumerate")}, {})
    with h5py.File(path) as f:
        assert "x" not in f[".reduced"]
        assert f["x/data"][()].tolist() == [0, 1, 2]
    assert "Could not store the summary of x" in caplog.text


def _kaleido_works():
    import plotly.graph_objects as go
    try:
        go.Figure().to_image(format="png")
    except Exception:
        return False
    return True


def test_plotly_default_summary_never_loses_the_fragment(tmp_path):
    import plotly.graph_objects as go
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    path = write_fragment(tmp_path / "frag.h5", {"fig": Cell(fig), "n": Cell(1)}, {})
    with h5py.File(path) as f:
        assert f["n/data"][()] == 1
        assert json.loads(f["fig/data"][()].tobytes())["data"][0]["type"] == "bar"
        if _kaleido_works():
            assert max(png_size(f[".reduced/fig"])) == 300
        else:  # no Chrome for kaleido: a short marker instead of the thumbnail
            assert f[".reduced/fig"][()].decode() == "<thumbnail error>"


NO_PLOTTING = textwrap.dedent("""
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {blocked}:
                raise ModuleNotFoundError(f"No module named {{name!r}}")
    sys.meta_path.insert(0, Block())
    import h5py, numpy as np, xarray as xr
    from context_loader.cells import Cell
    from context_loader.fragment import write_fragment
    path = write_fragment(sys.argv[1], {{
        "line": Cell(np.arange(500.)), "image": Cell(np.ones((4, 4))),
        "da": Cell(xr.DataArray(np.arange(3.), dims=["x"], name="v")),
    }}, {{}})
    with h5py.File(path) as f:
        for name in ("line", "image"):
            s = f[".reduced/" + name]
            print(name, s.dtype, s.shape, s[()] if s.dtype.kind == "O" else "")
        print("da", f["da/v"][()].tolist())
    print("loaded:", sorted(m for m in {blocked} if m in sys.modules))
""")


def _run_without(tmp_path, blocked):
    code = NO_PLOTTING.format(blocked=repr(set(blocked)))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.h5")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_works_without_matplotlib_plotly_fpcs(tmp_path):
    out = _run_without(tmp_path, ["matplotlib", "plotly", "fpcs", "PIL"])
    assert "line object () b'<thumbnail error>'" in out
    assert "image object () b'<thumbnail error>'" in out
    assert "da [0.0, 1.0, 2.0]" in out
    assert "loaded: []" in out


def test_line_thumbnail_without_fpcs(tmp_path):
    out = _run_without(tmp_path, ["fpcs"])
    assert "line uint8" in out  # PNG bytes instead of a trendline
    assert "image uint8" in out
