"""Storage: checkpoint directories, their model cards and training state."""
