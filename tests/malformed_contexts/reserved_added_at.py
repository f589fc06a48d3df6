# expect: malformed_contexts/reserved_added_at.py:4: variable 'added_at': the name 'added_at' is reserved for a column of the run table
from damnit_ctx import Variable

@Variable(title="Added")
def added_at(run):
    return 0
