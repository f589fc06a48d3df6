# expect: malformed_contexts/empty_title.py:4: variable 'foo': title='' (must be a non-empty string)
from damnit_ctx import Variable

@Variable(title="")
def foo(run):
    return 42
