"""pacos: the Stanford Alpaca recipe end to end (data, fine-tuning, serving, export, evaluation)."""

import os as _os

# Idle OpenMP threads sleep instead of spinning. The generation engine does Python work (sampling, streaming
# text) between forward passes; with spinning threads that work fought them for the cores and decoding was
# ~5x slower on 2 cores (measured with bench/infer.py). It only takes effect if pacos is imported before torch
# starts OpenMP (the `pacos` command always is); an explicit setting is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
