"""The attention backbone (being written)."""
