# expect: malformed_contexts/bad_meta_field.py:4: variable 'foo': argument 'n' has an invalid meta dependency: 'run' (can be run_number, proposal, proposal_path)
from damnit_ctx import Variable

@Variable(title="foo")
def foo(run, n: "meta#run"):
    return n
