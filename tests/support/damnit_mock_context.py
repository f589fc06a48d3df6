"""DAMNIT's own test context, as the loading and evaluation tests use it."""

# DAMNIT's own test context (tests/conftest.py `mock_ctx`, without plotly).
MOCK_CODE = '''\
import time
import numpy as np
import xarray as xr
from damnit_ctx import Variable, Cell

@Variable(title="Scalar1", tags=['scalar', 'integer'])
def scalar1(run, run_nr: 'meta#run_number'):
    if run_nr == 2:
        return None
    elif run_nr == 3:
        return np.nan
    return 42

@Variable(title="Scalar2", tags=['scalar', 'float'])
def scalar2(run, foo: "var#scalar1"):
    return 3.14 if foo is not None else None

@Variable(title="Empty text", tags='text')
def empty_string(run):
    return ""

@Variable(title="Array", summary="size")
def array(run, foo: "var#scalar1", bar: "var#scalar2"):
    if foo is not None and bar is not None:
        return np.array([foo, bar])
    return None

@Variable(title="Timestamp2")
def timestamp(run):
    return time.time()

@Variable(data="proc", summary="mean")
def meta_array(run, baz: "var#array", run_number: "meta#run_number",
               proposal: "meta#proposal", ts: "var#timestamp"):
    return xr.DataArray([run_number, proposal])

@Variable(data="raw")
def string(run, proposal_path: "meta#proposal_path"):
    return str(proposal_path)

@Variable(title="Results")
def results(run, run_nr: "meta#run_number"):
    if run_nr == 1:
        return "OK"
    else:
        return "Failed"

@Variable(title='Image')
def image(run, run_nr: 'meta#run_number'):
    if run_nr in (1, 1000):
        return np.random.rand(10, 10)
'''
