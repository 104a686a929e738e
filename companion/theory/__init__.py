"""Chapter numerics that are not infrastructure: the 1-d GAN game with its exact densities and divergences."""
