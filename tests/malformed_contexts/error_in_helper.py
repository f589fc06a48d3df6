# expect: malformed_contexts/error_in_helper.py:6: error while running the context file: KeyError: 'SA3'
from damnit_ctx import Variable

DEVICES = {"SA1": "SA1_XTD2_XGM/XGM/DOOCS"}
def device(beamline):
    return DEVICES[beamline]

XGM = device("SA3")
