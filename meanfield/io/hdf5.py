"""HDF5 run files: the layout, and the public names of the modules that read and write them.

::

    attrs: config (JSON), meanfield_version, numpy/numba/h5py versions, created, status
    /scales/{sim_time, iteration, oracle_calls, wall_time}   (T,)
    /tasks/<name>                                            (T, ...)
    /grid/<axis>                                             (M,)  cell centres (grid runs)
    /checkpoint/<state>  attrs t, iteration, oracle_calls
                         the named state arrays of the system: x, y (particles),
                         density (grid runs), flow_x, flow_y (bilinear flow map)

(docs/file-format.md, after Dedalus). The work is split by job:

* :mod:`meanfield.io.runfile`: what a file at an output path is (locks, an
  unstarted run, :func:`~meanfield.io.runfile.run_file_status`);
* :mod:`meanfield.io.checkpoint`: the sidecar and ``/checkpoint`` states a run resumes from;
* :mod:`meanfield.io.writer`: :class:`~meanfield.io.writer.HDF5Writer` (saves, crash safety, free space);
* :mod:`meanfield.io.reader`: :func:`~meanfield.io.reader.load` and the saved tasks.

This module re-exports their public names, so ``from meanfield.io.hdf5 import load`` keeps working.
"""

# ruff: noqa: F401
# re-exports only (documented where they are defined): no __all__, so the API reference lists
# each name once
from __future__ import annotations

from .checkpoint import CHECKSUMS, read_checkpoint, write_checkpoint_file
from .reader import SavedTasks, Trajectory, grid_axes, last_state, load, saved_array, saved_rows
from .runfile import (
    CHECKPOINT_SUFFIX,
    HDF5_SIGNATURE,
    SCALES,
    RunFileStatus,
    check_output_path,
    checkpoint_path,
    is_being_written,
    is_open_elsewhere,
    is_unstarted,
    run_file_status,
    unreadable_reason,
)
from .writer import (
    CHECKPOINT_INTERVAL,
    SPACE_MARGIN,
    HDF5Writer,
    free_bytes,
    is_no_space,
    temp_file_beside,
    truncate_to,
)
