# expect: malformed_contexts/reserved_run.py:4: variable 'run': the name 'run' is reserved for a column of the run table
from damnit_ctx import Variable

@Variable(title="Run number")
def run(r, n: "meta#run_number"):
    return n
