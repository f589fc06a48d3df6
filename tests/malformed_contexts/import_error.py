# expect: malformed_contexts/import_error.py:3: error while running the context file: ModuleNotFoundError: No module named 'no_such_module'
from damnit_ctx import Variable
import no_such_module

@Variable(title="Foo")
def foo(run):
    return 42
