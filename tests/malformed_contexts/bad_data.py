# expect: malformed_contexts/bad_data.py:4: variable 'foo': data='calibrated' (can be 'raw'/'proc')
from damnit_ctx import Variable

@Variable(title="Foo", data="calibrated")
def foo(run):
    return 42
