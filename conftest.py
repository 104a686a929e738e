"""Test settings (tests/ and the nbval run of book/): quick mode, no progress bars, no display, and no network for MNIST.

Environment variables set here are inherited by the notebook kernels nbval starts.
"""

import os

os.environ["COMPANION_QUICK"] = "1"
os.environ["COMPANION_PROGRESS"] = "0"
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
