"""Data: what genkit trains on (types), where it comes from (sources, loading), and
the in-memory datasets plugins build from it."""
