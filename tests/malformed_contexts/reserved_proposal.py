# expect: malformed_contexts/reserved_proposal.py:4: variable 'proposal': the name 'proposal' is reserved for a column of the run table (proposal, run, start_time, added_at, comment); rename the function
from damnit_ctx import Variable

@Variable(title="Proposal number")
def proposal(run, p: "meta#proposal"):
    return p
