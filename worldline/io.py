"""Atomic file writes and safe weight loading.

Every file the project writes that another process may read (checkpoints, datasets, JSON results)
goes through :func:`atomic_write`: the bytes go to a temporary file in the same directory, are
fsync'ed, and the file is renamed over the target. A crash or exception mid-way leaves the old
file untouched. Weights are stored as safetensors and never unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import torch

__all__ = ["atomic_path", "atomic_write", "load_json", "load_weights", "save_json", "save_weights"]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(directory: Path) -> None:
    """fsync ``directory`` so a rename inside it is durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success fsync and rename it into place.

    If the body raises, the temporary file is removed and ``path`` keeps its previous content.

    Examples:
        >>> with atomic_write("results.json", "w") as f:  # doctest: +SKIP
        ...     f.write("{}")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for libraries that write files themselves (h5py, safetensors).

    After the body returns the file is fsync'ed and renamed onto ``path`` and the directory is
    fsync'ed so the rename is durable; on error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def save_json(obj, path: str | os.PathLike, *, indent: int = 2) -> None:
    """Write ``obj`` as JSON atomically (keys sorted, so equal objects give equal bytes)."""
    text = json.dumps(obj, indent=indent, sort_keys=True) + "\n"
    with atomic_write(path, "w") as f:
        f.write(text)


def load_json(path: str | os.PathLike):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def save_weights(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Save a flat name -> tensor mapping as safetensors, atomically.

    ``metadata`` values are stored as strings (safetensors' header only holds strings).
    """
    from safetensors.torch import save_file

    bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"tensors: values must be tensors; not for keys {bad[:5]}")
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=meta)


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load weights without executing code.

    ``.safetensors`` files are read with safetensors; ``.pt``/``.pth``/``.bin`` files only with
    ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid safetensors file ({exc})") from None
    if path.suffix in (".pt", ".pth", ".bin"):
        try:
            obj = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError and friends
            raise ValueError(f"{path}: refused to load ({type(exc).__name__}: {exc})") from None
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path}: expected a mapping of tensors, got {type(obj).__name__}")
        return dict(obj)
    raise ValueError(f"{path}: unknown weights format {path.suffix!r} (expected .safetensors, .pt, .pth, .bin)")
