"""Evaluation: vtprune's runner over the bundled proving ground and real checkpoints (lmms-eval)."""
