"""Test settings (tests/ and the nbval run of book/): quick mode and no progress bars.

Environment variables set here are inherited by the notebook kernels nbval starts.
"""

import os

os.environ["COMPANION_QUICK"] = "1"
os.environ["COMPANION_PROGRESS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
