"""Chapter 1: the tiny network written four ways has the same size and, with copied weights, the same outputs."""

import numpy as np
import pytest
import torch

from companion import bridge
from companion.tensorflow import basics as tf_basics
from companion.torch import basics as torch_basics

X = np.random.default_rng(0).random((16, 784), dtype=np.float32)


def _as_list(outputs):
    return [
        np.asarray(o.detach() if hasattr(o, "detach") else o)
        for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
    ]


@pytest.mark.parametrize("builder", ["tiny_sequential", "tiny_functional", "two_output_functional"])
def test_parameter_counts_match(builder):
    keras_model, torch_model = getattr(tf_basics, builder)(), getattr(torch_basics, builder)()
    assert tf_basics.count_parameters(keras_model) == torch_basics.count_parameters(torch_model)


@pytest.mark.parametrize("builder", ["tiny_sequential", "tiny_functional", "two_output_functional"])
@pytest.mark.parametrize("direction", ["keras_to_torch", "torch_to_keras"])
def test_copied_weights_give_the_same_outputs(builder, direction):
    keras_model, torch_model = getattr(tf_basics, builder)(), getattr(torch_basics, builder)()
    if direction == "keras_to_torch":
        bridge.keras_to_torch(keras_model, torch_model)
    else:
        bridge.torch_to_keras(torch_model, keras_model)
    with torch.no_grad():
        torch_out = _as_list(torch_model(torch.from_numpy(X)))
    keras_out = _as_list(keras_model(X))
    assert len(torch_out) == len(keras_out)
    for a, b in zip(keras_out, torch_out, strict=True):
        assert np.abs(a - b).max() < 1e-5


def test_bridge_refuses_different_architectures():
    with pytest.raises(ValueError, match="the models differ"):
        bridge.keras_to_torch(tf_basics.tiny_sequential(), torch_basics.two_output_functional())
