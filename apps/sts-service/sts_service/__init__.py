"""livedub."""

import os

# One OpenMP/OpenBLAS thread per calling thread, set before numpy or CTranslate2 load (this module
# is imported first by the console script). The service already runs its model work on its own
# worker threads; numpy's OpenBLAS pool (the mel filterbank of every fragment) spun two threads
# against them: on 2 cores, a 2-thread ASR call took 228 ms with it and 165 ms without, and two
# 1-thread workers next to a process taking half a core 379 -> 298 ms a call (bench: see the spec).
# CTranslate2 still uses --asr-threads (it sets its own thread count per call). An explicit
# OMP_NUM_THREADS in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
