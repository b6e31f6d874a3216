"""Training the proving-ground model from scratch (``python -m vtprune.proving_ground.train``)."""
