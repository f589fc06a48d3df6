# expect: malformed_contexts/group_bad_self_dependency.py: GroupError: Variable 'xgm.corrected' of group 'xgm' (XGMDiag), argument 'e': 'self#energyy': group 'xgm' (XGMDiag) has no attribute 'energyy'
from damnit_ctx import Variable, Group

@Group
class XGMDiag:
    @Variable(title="Energy")
    def energy(self, run):
        return 1

    @Variable(title="Corrected")
    def corrected(self, run, e: "self#energyy"):
        return e

xgm = XGMDiag()
