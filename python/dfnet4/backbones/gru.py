"""The gru backbone (being written)."""
