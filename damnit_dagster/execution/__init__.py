"""Where variables run: in a child forked from a warm process, in the folder's
``context_python``, or in a Slurm job; each under the folder's limits, into a fragment
that :mod:`damnit_dagster.storage.writer` stores (see :mod:`.process_run`)."""
