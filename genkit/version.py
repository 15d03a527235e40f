"""genkit's version (one place; read by packaging tools and recorded in checkpoints)."""

__version__ = "0.1.0"
