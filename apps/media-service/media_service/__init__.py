"""livedub."""

import os

# One OpenMP/OpenBLAS thread per calling thread, set before numpy loads (this module is imported
# first by the console script): the media-service does its DSP on its own threads, and numpy's
# OpenBLAS pool would spin extra threads against them on a small machine. An explicit
# OMP_NUM_THREADS in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
