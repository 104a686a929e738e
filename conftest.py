"""Test settings (tests/ and the nbval run of book/): quick mode and no progress bars.

Environment variables set here are inherited by the notebook kernels nbval starts.
"""

import contextlib
import importlib.util
import os

import pytest

os.environ["COMPANION_QUICK"] = "1"
os.environ["COMPANION_PROGRESS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True, scope="session")
def exact_float32():
    """Parity checks compare frameworks to 1e-4: no TensorFloat-32 on either side (it only matters on
    Ampere and newer GPUs, where both frameworks would otherwise use it for float32 products)."""
    with contextlib.ExitStack() as stack:
        for framework in ("tensorflow", "torch"):
            if importlib.util.find_spec(framework) is not None:
                if framework == "tensorflow":
                    import companion.tensorflow  # noqa: F401  # Keras on TensorFlow, quiet start-up
                runtime = importlib.import_module(f"companion.{framework}.runtime")
                stack.enter_context(runtime.exact_float32())
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small networks: one PyTorch thread is as fast, and two oversubscribe a small shared CPU.
    Test modules of small models ask for it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
