"""File helpers shared by every command: atomic writes, run configs, seeding, logging, provenance.

Torch and NumPy are imported by the functions that use them, so that the workflow can write its resolved JSON with
:func:`write_json` while it builds the DAG without loading either. Nothing here knows about the method; command modules call these so that a killed job never leaves a
half-written checkpoint, JSON or NPZ behind (write to a temporary file in the same folder, then
``os.replace``, which is atomic on POSIX file systems).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

FORMAT_VERSION = 1
PROGRESS_SECONDS = 30.0  # at most one progress line per loop this often (a rule's log is a file, not a terminal)
_T = TypeVar("_T")


def _atomic_target(path: str | os.PathLike) -> tuple[Path, str]:
    """A temporary file beside ``path`` with the permissions a plain ``open`` would give (mkstemp makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return path, tmp


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace``."""
    import torch

    path, tmp = _atomic_target(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path`` atomically."""
    path, tmp = _atomic_target(path)
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON, atomically. NaN is written as ``null``-free ``NaN`` (json default)."""
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n", path)


def _json_default(obj: Any) -> Any:
    np = sys.modules.get("numpy")  # a NumPy value exists only where NumPy was imported
    if np is not None and isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if np is not None and isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically (the file keeps the exact name given)."""
    import numpy as np

    path, tmp = _atomic_target(path)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :func:`atomic_torch_save`, with ``weights_only=True``.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def git_sha() -> str:
    """The commit of the working tree this package was imported from, or ``"unknown"``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator seeded with ``seed`` for explicit use."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr with timestamps; rules redirect stderr to their ``log:`` file."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def progress(items: Iterable[_T], desc: str, total: int | None = None, every_s: float = PROGRESS_SECONDS) -> Iterator[_T]:
    """Yield ``items`` unchanged, logging ``desc: i/total (p%), elapsed, eta`` at INFO on the ``dat.progress`` logger
    each time ``every_s`` seconds have passed since the last line, and once more after the last item when it has
    logged before, so that a long loop shows in its rule's log file (tqdm switches itself off when stderr is not a
    terminal) and a short one stays silent. ``total`` defaults to ``len(items)``; the loop's work and results are
    untouched.
    """
    log = logging.getLogger("dat.progress")
    total = len(items) if total is None else total
    t0 = last = time.monotonic()
    done, logged = 0, False
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s or (logged and done == total):
            last, elapsed, logged = now, now - t0, True
            eta = elapsed / done * (total - done)
            log.info("%s: %d/%d (%.0f%%), %.0f s elapsed, about %.0f s left", desc, done, total,
                     100.0 * done / max(total, 1), elapsed, eta)


def set_threads(threads: int | None) -> None:
    """Limit torch's intra-op threads to what the rule was given (``threads:`` in Snakemake)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device a command runs on: ``auto`` is the first CUDA GPU when one is visible, else the CPU.

    Raises:
        ValueError: a CUDA device was asked for but none is available (names the value).
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    return device


def add_device_argument(parser) -> None:
    """``--device`` (default ``auto``) on a command's argparse parser."""
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA when available, else CPU), cpu, cuda:N")


def provenance() -> dict:
    """Fields every result JSON carries: code revision and library versions."""
    import torch

    return {"git_sha": git_sha(), "torch_version": str(torch.__version__), "format_version": FORMAT_VERSION}
