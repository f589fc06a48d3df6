# expect: malformed_contexts/toplevel_exception.py:5: error while running the context file: ZeroDivisionError: division by zero
from damnit_ctx import Variable

SCALE = 10
OFFSET = SCALE / 0

@Variable(title="Foo")
def foo(run):
    return OFFSET
