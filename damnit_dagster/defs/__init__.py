"""The code location of a DAMNIT folder: assets, jobs, partitions, sensor, resources."""
