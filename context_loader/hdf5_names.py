"""Names in DAMNIT's HDF5 layout that the fragment writer and the storage merging
fragments into run files both use."""

#: Attribute on a group or dataset saying which kind of object it holds (``dataarray``,
#: ``dataset``, ``series``, ``dataframe``, ``image``, ``PlotlyFigure``).
OBJTYPE_ATTR = "_damnit_objtype"
#: The kinds written as netCDF groups by h5netcdf.
NETCDF_OBJTYPES = ("dataarray", "dataset")
#: Groups of DAMNIT's layout: each variable's table summary, its preview, its error.
SUMMARY_GROUP = ".reduced"
PREVIEW_GROUP = ".preview"
ERRORS_GROUP = ".errors"
DAMNIT_GROUPS = (SUMMARY_GROUP, PREVIEW_GROUP, ERRORS_GROUP)
#: Group holding each stored variable's provenance record (a JSON text per name).
PROVENANCE_GROUP = ".provenance"
#: Dataset holding all of a file's provenance records as one JSON object, written with
#: them so that they are read in one go (disregarded unless it lists the same names).
PROVENANCE_INDEX = ".provenance_index"
#: How xarray names the variable and keeps the name of a DataArray written as a dataset.
DATAARRAY_VARIABLE = "__xarray_dataarray_variable__"
DATAARRAY_NAME = "__xarray_dataarray_name__"
