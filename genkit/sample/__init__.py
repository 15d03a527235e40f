"""Sampling: planning and drawing samples by seed, and writing them to folders."""
