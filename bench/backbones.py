"""The backbone table (same as `dfnet4-bench`): every backbone x implementation at batch 8, 500 frames.

    python bench/backbones.py [--batch 8 --frames 500 --repeats 5 --warmup 2 --only ... --hidden 256]

Writes bench/results/backbones.{md,json,png}. See docs/benchmarks.md.
"""

import sys

import dfnet4  # noqa: F401  (first: routes MLX's BLAS before mlx.core is loaded)
from dfnet4.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
