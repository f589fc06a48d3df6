# expect: malformed_contexts/group_missing_dependency.py:6: variable 'xgm.corrected': missing dependency 'var#global_offst' (did you mean 'var#global_offset'?)
from damnit_ctx import Variable, Group

@Group
class XGMDiag:
    @Variable(title="Corrected")
    def corrected(self, run, offset: "var#global_offst"):
        return offset

@Variable(title="Offset")
def global_offset(run):
    return 1

xgm = XGMDiag()
