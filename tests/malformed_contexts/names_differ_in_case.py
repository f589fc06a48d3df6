# expect: malformed_contexts/names_differ_in_case.py:8: variable 'Energy': the name differs from 'energy' only in case, but table columns ignore case
from damnit_ctx import Variable

@Variable(title="energy (raw)")
def energy(run):
    return 1

@Variable(title="Energy (corrected)")
def Energy(run, e: "var#energy"):
    return e + 1
