"""Code examples of the spec (shared/spec/backend.md) used by several test modules."""
from support.paths import REPO

#: The spec's first example context (``context.py``): ``xgm_intensity`` and ``pulses``.
#: The project ships it as the context a new DAMNIT folder starts with.
FIRST_EXAMPLE = (REPO / "damnit_dagster" / "templates" / "context_example.py").read_text()

# -- the spec's group examples, as printed -------------------------------------------------

#: ``XGMDiagnostics`` and its two instances ``xgm_sa2`` and ``xgm_hed``.
GROUP_XGM = '''
from extra.components import XGM
from damnit_ctx import Variable, Group

@Group(title="XGM Diag", tags=["XGM"])
class XGMDiagnostics:
    # parameters are defined as dataclass fields
    device_name: str = None
    offset: float = 0.0

    @Variable(title="Pulse Energy", summary="mean")
    def pulse_energy(self, run):
        # Use instance attributes for configuration
        return XGM(run, self.device_name).pulse_energy()

    @Variable(title="Corrected Energy", summary="mean")
    def corrected_energy(self, run, energy: "self#pulse_energy"):
        # This has an intra-group dependency on the 'pulse_energy' variable
        return energy + self.offset

# Instantiate the group in your context file, providing parameters values
xgm_sa2 = XGMDiagnostics(title="XGM SA2", device_name="SA2_XTD6_XGM/XGM/DOOCS", offset=1.1)
xgm_hed = XGMDiagnostics(title="XGM HED", device_name="HED_XTD9_XGM/XGM/DOOCS", offset=0.9)
'''

#: A group depending on a top-level variable and on another group's variable (append it to
#: :data:`GROUP_XGM`).
CROSS_GROUP = '''
@Variable(title="Global Offset")
def global_offset(run):
    return 42

@Group
class MyGroup:

    @Variable()
    def local_var(self, run, offset: "var#global_offset"):
        # Correctly depends on the top-level global_offset
        return 10 + offset

    @Variable()
    def another_var(self, run, xgm_energy: "var#xgm_hed.corrected_energy"):
        # Correctly depends on a variable from another group instance
        return xgm_energy * 2

instance = MyGroup("Group")
'''

#: ``MIDDiagnostics`` nesting a ``Detector`` and an ``XGMDiagnostics`` (append it to
#: :data:`GROUP_XGM`). As printed it instantiates ``XGM(...)``, which is
#: ``extra.components.XGM`` there, not the group: see :data:`NESTED_AS_MEANT`.
NESTED = '''
@Group(title="DET")
class Detector:
    name: str = "LPD"

    @Variable(title="Photon Count")
    def n_photons(self, run):
        return run.alias[self.name]['photon-count'].xarray()

# MIDDiagnostics composes XGMDiagnostics and Detector
@Group(title="MID Diag", tags=["MID", "Diag"])
class MIDDiagnostics:
    # Nested instances of other groups
    xgm: XGMDiagnostics = None
    agipd = Detector(title="AGIPD", name="AGIPD1M")

    # This variable can depend on children of the nested groups
    @Variable(title="Photons per µJ")
    def photons_per_microjoule(self, run,
                               photons: "self#agipd.n_photons",
                               energy: "self#xgm.corrected_energy"):
        return photons / energy

# Instantiate the top-level group
mid = MIDDiagnostics(
    xgm=XGM(
        title="XGM SA2",
        device_name="SA2_XTD6_XGM/XGM/DOOCS",
        offset=1.1,
        tags=["XGM", "SA2"]
    ),
)
'''

#: :data:`NESTED` as it is meant: the nested instance is an ``XGMDiagnostics``.
NESTED_AS_MEANT = NESTED.replace("xgm=XGM(", "xgm=XGMDiagnostics(")

#: Groups and inheritance (needs ``Variable`` and ``Group`` imported).
INHERITANCE = '''
@Group(title='Base')
class BaseAnalysis:
    @Variable(title="Train Count")
    def n_trains(self, run):
        return len(run.train_ids)

# inherits base class' Group properties (e.g. title='Base')
class DetectorAnalysis(BaseAnalysis):  # Inherits n_trains
    @Variable(title="Photon Count", data="proc")
    def photon_count(self, run, n_trains: "self#n_trains"):
        # Depends on an inherited variable
        return 1e6 / n_trains

# Sub class decorate with @Group resets Group's properties
@Group(tags=["Alt"])
class DetectorAnalysisAlt(BaseAnalysis):
    ...

# This instance will have two variables: detector.n_trains and detector.photon_count
detector = DetectorAnalysis("Detector")
'''
