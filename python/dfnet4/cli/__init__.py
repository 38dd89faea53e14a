"""Console entry points: dfnet4-train, dfnet4-prepare, dfnet4-enhance."""
