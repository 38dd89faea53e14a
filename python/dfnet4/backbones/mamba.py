"""The mamba backbone (being written)."""
