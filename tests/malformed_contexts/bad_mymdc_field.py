# expect: malformed_contexts/bad_mymdc_field.py:4: variable 'foo': argument 'quux' has an invalid MyMdC dependency: 'quux' (can be run_type, sample_name, techniques)
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run, quux: "mymdc#quux"):
    return 42
