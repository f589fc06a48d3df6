# expect: malformed_contexts/missing_glob_dependency.py:8: variable 'total': missing dependency 'var#xgm_*' (no variable matches the pattern)
from damnit_ctx import Variable

@Variable(title="Energy")
def energy(run):
    return 42

@Variable(title="Total")
def total(run, parts: "var#xgm_*"):
    return sum(parts.values())
