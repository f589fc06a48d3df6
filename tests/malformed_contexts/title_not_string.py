# expect: malformed_contexts/title_not_string.py:4: variable 'foo': title=42 (must be a non-empty string)
from damnit_ctx import Variable

@Variable(42)
def foo(run):
    return 42
