# expect: malformed_contexts/empty_tag.py:4: variable 'foo': tags=['bar', ''] (must be a non-empty string or an iterable of strings)
from damnit_ctx import Variable

@Variable(title="Foo", tags=['bar', ''])
def foo(run):
    return 42
