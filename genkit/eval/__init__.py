"""Evaluation: sample quality against held-out data, beside a floor and a baseline."""
