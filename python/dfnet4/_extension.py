"""Access to the compiled extension, with one clear error when it is missing."""

from __future__ import annotations

_ext = None
_error: Exception | None = None


def load():
    """Return the compiled `dfnet4._ext` module, or raise ImportError saying why it is unavailable."""
    # Imported on first use, not at module import: the extension is optional (every op has a
    # pure-MLX reference) and loading it pulls in libmlx, which `import dfnet4` and the CLIs'
    # start-up must not do before the BLAS shim is in place (docs/blas.md).
    global _ext, _error
    if _ext is not None:
        return _ext
    if _error is None:
        try:
            import mlx.core  # noqa: F401  (libmlx must be loaded before the extension)

            from dfnet4 import _ext as ext

            _ext = ext
            return _ext
        except ImportError as exc:  # remembered so every caller gets the same reason
            _error = exc
    raise ImportError(
        "dfnet4's compiled extension (dfnet4._ext) is not importable: "
        f"{_error}. Reinstall with `pip install .` from the source tree."
    ) from _error


def available() -> bool:
    """True when the fused kernels can be used."""
    try:
        load()
        return True
    except ImportError:
        return False


def require(fused: bool, who: str) -> bool:
    """A construction-time fused=True/False: True needs the extension (an error naming `who`, never a
    silent fallback to the pure-MLX path)."""
    if fused and not available():
        reason = _error if _error is not None else "not loaded"
        raise RuntimeError(
            f"{who}: fused=True needs dfnet4's compiled extension, which is not importable ({reason}); "
            "rebuild/reinstall dfnet4 (`pip install .` from the source tree), or pass fused=False (or None) "
            "to use the pure-MLX path"
        )
    return bool(fused)


def resolve(fused: bool | None, who: str) -> bool:
    """fused=None: the fused kernels when the extension is importable; True/False: as require()."""
    return available() if fused is None else require(fused, who)
