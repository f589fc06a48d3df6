# expect: malformed_contexts/indentation_error.py:7: IndentationError: unexpected indent
from damnit_ctx import Variable

@Variable(title="Foo")
def foo(run):
    x = 1
        return x
