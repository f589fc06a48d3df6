# expect: malformed_contexts/reserved_start_time.py:5: variable 'start_time': the name 'start_time' is reserved for a column of the run table
import time
from damnit_ctx import Variable

@Variable(title="Start")
def start_time(run):
    return time.time()
