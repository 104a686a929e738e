"""PyTorch's half of the one training loop (:mod:`companion.training.loop`).

:class:`Trainer` wraps a model's train step: it moves the models and the training arrays to the
device once, gathers each batch there, runs the step and writes or reads checkpoints (weights,
optimiser state and the CPU and CUDA random states) with ``torch.save``/``torch.load``.
``companion.tensorflow.training`` is the same for TensorFlow, name for name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from companion.torch import runtime
from companion.training.run_folder import RunFolderError

FRAMEWORK = "torch"
Batch = dict[str, torch.Tensor]


def make_adam(
    model: nn.Module, learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> torch.optim.Adam:
    """Adam over ``model``'s parameters, with Keras' epsilon unless told otherwise."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(beta_1, beta_2), eps=epsilon)


def seed_states(models: Mapping[str, nn.Module]) -> dict[str, Any]:
    """PyTorch's global random states (CPU, and every CUDA device once CUDA is in use): dropout masks
    come from them, so a resume that restores them continues as an unbroken run would."""
    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def load_weights(
    folder: str | Path, models: Mapping[str, Any], device: str | torch.device | None = None
) -> None:
    """Load the named models' weights from a checkpoint folder (for inference: optimisers and the
    random streams are left alone)."""
    Trainer(lambda batch: {}, models=models, optimizers={}, device=device).load_state(
        folder, random_state=False
    )


class Trainer:
    """Runs ``step(batch) -> metrics`` for the loop; ``batch`` maps names to tensors on the device.

    The models are moved to the device here (in place). ``models`` and ``optimizers`` (by name) are
    what a checkpoint holds. ``compile=True`` wraps the step in ``torch.compile``.
    """

    framework = FRAMEWORK

    def __init__(
        self,
        step: Callable[[Batch], Mapping[str, torch.Tensor]],
        *,
        models: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        device: str | torch.device | None = None,
        compile: bool = False,
    ) -> None:
        self.device = runtime.device(device)
        self.models, self.optimizers = dict(models), dict(optimizers)
        for model in self.models.values():
            model.to(self.device)
        self._step = torch.compile(step) if compile else step
        self._arrays: dict[str, torch.Tensor] = {}

    def upload(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._arrays = {
            name: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device)
            for name, a in arrays.items()
        }

    def step(self, index: np.ndarray, inputs: Mapping[str, np.ndarray]) -> Mapping[str, torch.Tensor]:
        rows = torch.from_numpy(np.asarray(index, np.int64)).to(self.device)
        batch = {name: array.index_select(0, rows) for name, array in self._arrays.items()}
        batch.update(
            {name: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for name, v in inputs.items()}
        )
        return self._step(batch)

    def to_floats(self, values: Mapping[str, Any]) -> dict[str, float]:
        return {name: float(value) for name, value in values.items()}

    def save_state(self, folder: str | Path) -> None:
        state = {
            "models": {name: m.state_dict() for name, m in self.models.items()},
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "random_states": seed_states(self.models),
        }
        torch.save(state, Path(folder) / "state.pt")

    def load_state(self, folder: str | Path, random_state: bool = True) -> None:
        """Load a checkpoint; ``random_state=False`` leaves the global random streams alone (inference)."""
        path = Path(folder) / "state.pt"
        try:
            # weights_only=True: only tensors and plain containers are unpickled, never code.
            state = torch.load(path, map_location=self.device, weights_only=True)
            for name, model in self.models.items():
                model.load_state_dict(state["models"][name])
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state["optimizers"][name])
            randoms = state["random_states"]
        except Exception as err:  # torch raises many kinds for bad files; its advice is not relayed
            raise RunFolderError(
                f"checkpoint {path} is damaged or was written for another model ({type(err).__name__}); "
                "delete its folder to fall back to the checkpoint before it, or start again with overwrite"
            ) from err
        if not random_state:
            return
        torch.set_rng_state(randoms["cpu"].cpu())
        if "cuda" in randoms and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in randoms["cuda"]])
