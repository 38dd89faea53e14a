"""Time per step and peak memory versus sequence length (same as `dfnet4-bench --scaling`).

    python bench/scaling.py [--scaling-frames 125,250,500,1000,2000,4000 --reference-max-frames 1000
                             --scaling-measure backbone_fwd_bwd]

Writes bench/results/scaling.{md,json,png}. See docs/benchmarks.md.
"""

import sys

import dfnet4  # noqa: F401  (first: routes MLX's BLAS before mlx.core is loaded)
from dfnet4.cli.bench import main

if __name__ == "__main__":
    sys.argv[1:1] = ["--scaling"]
    sys.exit(main())
