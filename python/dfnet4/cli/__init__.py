"""Console entry points (dfnet4-*)."""
