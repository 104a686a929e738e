"""PyTorch implementations; mirrors ``companion.tensorflow`` file for file."""
