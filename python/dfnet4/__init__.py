"""dfnet4: fast, correct DeepFilterNet4 training with MLX."""

__version__ = "0.1.0"
