"""A plotly figure, appended to the equivalence context only where kaleido finds a
Chrome/Chromium to render its thumbnail (DAMNIT 0.4.0 loses the whole run otherwise)."""
import numpy as np

from damnit_ctx import Variable


@Variable(title="Plotly")
def plotly_fig(run, xgm: "var#xgm_intensity"):
    import plotly.express as px
    return px.line(x=np.arange(xgm.size), y=xgm.values)
