"""What the three CLIs share: error reporting with a clear message and exit status 2."""

from __future__ import annotations

import sys


def fail(prog: str, message: str, status: int = 2) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status
