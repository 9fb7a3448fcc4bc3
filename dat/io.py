"""File helpers shared by every command: atomic writes, run configs, seeding, logging, provenance.

Torch and NumPy are imported by the functions that use them, so that the workflow can write its resolved JSON with
:func:`write_json` while it builds the DAG without loading either. Nothing here knows about the method; command modules call these so that a killed job never leaves a
half-written checkpoint, JSON or NPZ behind (write to a temporary file in the same folder, then
``os.replace``, which is atomic on POSIX file systems), a full disk names the file and the space left, and a
damaged checkpoint is refused, naming the file and what is wrong, instead of loading quietly
(:func:`verify_checkpoint` checks the CRC32 that ``torch.save`` records for every member of its zip archive).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

FORMAT_VERSION = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # every command's log lines
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


# torch.save writes through its own C++ stream, which reports a full disk as a RuntimeError without the errno
_TORCH_WRITE_FAILED = re.compile(r"unexpected pos|file write failed|failed writing|No space left on device")


def _disk_full(err: BaseException) -> bool:
    """``err`` says that a write found no room: ENOSPC/EDQUOT, or torch.save's wrapping of it."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(err, RuntimeError) and bool(_TORCH_WRITE_FAILED.search(str(err)))


def _disk_full_error(path: Path, err: BaseException) -> OSError:
    """The OSError (errno ENOSPC) raised for a write of ``path`` that ran out of room: names the file, what is free."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
    return OSError(errno.ENOSPC, f"{path}: no space left on device while writing it ({free} in {path.parent}; "
                                 f"{type(err).__name__}: {err}); {kept}. Free some space there (or move results/ to a "
                                 "larger disk) and rerun the job")


@contextmanager
def _atomic_write(path: str | os.PathLike, previous: str | os.PathLike | None = None) -> Iterator[str]:
    """Yield a temporary file beside ``path`` to write; once the block ends, it replaces ``path`` (``os.replace``).

    With ``previous``, the file at ``path`` (if any) first becomes ``previous``, so that a killed job leaves either
    both or the newest of the two. On an error the temporary file is removed and ``path`` is untouched; a full disk
    raises the OSError of :func:`_disk_full_error` instead of the writer's own.
    """
    path, tmp = _atomic_target(path)
    try:
        yield tmp
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        if _disk_full(err):
            raise _disk_full_error(path, err) from err
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_torch_save(obj: Any, path: str | os.PathLike, previous: str | os.PathLike | None = None) -> None:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace``; with ``previous``, the file that was
    at ``path`` is kept there (one generation; see :func:`_atomic_write`).

    Raises:
        OSError: errno ENOSPC naming ``path`` and the free space when the disk is full (``path`` is untouched).
    """
    import torch

    with _atomic_write(path, previous) as tmp:
        torch.save(obj, tmp)


def atomic_link(source: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Make ``path`` the same file as ``source``: a hard link (no second copy on disk), or a copy where the file
    system has no hard links; it replaces ``path`` atomically (``os.replace``), as :func:`atomic_torch_save` does.

    Returns:
        True for a hard link, False for a copy.

    Raises:
        FileNotFoundError: ``source`` is missing; OSError (ENOSPC) as :func:`atomic_torch_save` for a copy that
        finds the disk full.
    """
    with _atomic_write(path) as tmp:
        os.remove(tmp)  # os.link does not overwrite
        try:
            os.link(source, tmp)
            linked = True
        except FileNotFoundError:
            raise
        except OSError:  # EPERM / EXDEV / ENOTSUP: no hard links here
            shutil.copyfile(source, tmp)
            linked = False
    return linked


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path`` atomically (a full disk: as :func:`atomic_torch_save`)."""
    with _atomic_write(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


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
    """``np.savez`` to ``path`` atomically (the file keeps the exact name given; a full disk: as
    :func:`atomic_torch_save`)."""
    import numpy as np

    with _atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


# -- checkpoint integrity --------------------------------------------------------------------------------------
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickled magic number of torch's pre-1.6 format


class CorruptCheckpointError(ValueError):
    """A checkpoint file that is truncated, damaged or no torch checkpoint at all.

    Attributes:
        path: the file (as given).
        problem: what is wrong with it, e.g. ``"truncated (...)"`` or ``"member 'x/data/0' fails its CRC check"``.
        advice: how to get a good copy, or None.
    """

    def __init__(self, path: str | os.PathLike, problem: str, advice: str | None = None):
        self.path, self.problem, self.advice = str(path), problem, advice
        super().__init__(f"checkpoint {path} is {problem}" + (f"; {advice}" if advice else ""))

    def with_advice(self, advice: str | None) -> "CorruptCheckpointError":
        """The same error with ``advice`` (replacing any) appended to its message."""
        return CorruptCheckpointError(self.path, self.problem, advice)


def verify_checkpoint(path: str | os.PathLike, full: bool = True, legacy: bool = False) -> str:
    """Check that ``path`` is a whole torch checkpoint, without torch.

    ``torch.save`` writes a zip archive that records the CRC32 of every member; ``torch.load`` checks neither
    the CRCs nor, helpfully, a cut-off end. ``full=False`` checks that the archive opens (its central directory,
    at the end of the file, is there: catches a truncated file, cheaply); ``full=True`` also reads every member
    against its CRC (flipped bytes anywhere, e.g. in a tensor's data).

    Args:
        path: the checkpoint file.
        full: also check every member's CRC (reads the whole file).
        legacy: accept torch's legacy (pre-1.6, non-zip) format, which has no checksum to check (some published
            checkpoints are in it); otherwise it is an error.

    Returns:
        ``"zip"``, or ``"legacy"`` for a legacy file let through by ``legacy``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptCheckpointError: naming ``path`` and what is wrong (without advice: callers add theirs,
            :meth:`CorruptCheckpointError.with_advice`).
    """
    size = os.path.getsize(path)  # FileNotFoundError names the path
    with open(path, "rb") as fh:
        head = fh.read(16)
    if size == 0:
        raise CorruptCheckpointError(path, "empty (0 bytes: truncated)")
    if head.startswith(_LEGACY_MAGIC):
        if legacy:
            return "legacy"
        raise CorruptCheckpointError(path, "in torch's legacy (non-zip) format, which no command of this pipeline "
                                           "writes and which carries no checksum")
    if not head.startswith(_ZIP_MAGIC):
        raise CorruptCheckpointError(path, f"not a torch checkpoint (no zip archive: it starts with {head!r})")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
                raise CorruptCheckpointError(path, "a zip archive but not a torch checkpoint (no data.pkl member)")
            bad = archive.testzip() if full else None
    except zipfile.BadZipFile as err:
        if "not a zip file" in str(err):
            raise CorruptCheckpointError(path, f"truncated ({size} bytes and no zip central directory at its end: "
                                               "the write was cut off or the copy is incomplete)") from None
        raise CorruptCheckpointError(path, f"damaged (its zip structure does not read: {err})") from None
    except (EOFError, zlib.error) as err:
        raise CorruptCheckpointError(path, f"damaged (a member does not read: {err})") from None
    if bad is not None:
        raise CorruptCheckpointError(path, f"damaged: member {bad!r} fails its CRC check (bytes changed since "
                                           "torch.save wrote it)")
    return "zip"


def checkpoint_advice(path: str | os.PathLike, published: bool = False) -> str:
    """How to replace a bad checkpoint ``path``: for a file of a run (``results/<run>/<file>``, or in its ``ckpt/``
    or ``snapshots/`` folder), the job to rerun; with ``published`` (a downloaded ``init_from`` file), download it
    again."""
    if published:
        return ("download it again (runs.<run>.init_from.url) and compare its sha256 with the published one "
                "(init_from.sha256)")
    path = Path(path)
    parents = [p.name for p in path.parents]
    if len(parents) > 1 and parents[1] == "results":
        run = parents[0]
        return f"delete it and rerun its target: snakemake results/{run}/{path.name}"
    if len(parents) > 2 and parents[2] == "results" and parents[0] in ("ckpt", "snapshots"):
        run = parents[1]
        return (f"the training of run {run} wrote it: delete results/{run}/model.pt, ckpt/ and snapshots/, then "
                f"rerun snakemake results/{run}/model.pt (it trains afresh)")
    return ("delete it and rerun the job that wrote it (for a run's model.pt or selected.pt: snakemake "
            "results/<run>/model.pt or selected.pt); a downloaded file: download it again and check its sha256")


def load_checkpoint(path: str | os.PathLike, legacy: bool = False, advice: str | None = None) -> dict:
    """Load a checkpoint written by :func:`atomic_torch_save`, with ``weights_only=True``, after checking every
    byte of it (:func:`verify_checkpoint`, full).

    Args:
        path: the checkpoint.
        legacy: also accept torch's legacy non-zip format (published checkpoints; unverifiable).
        advice: how to get a good copy, appended to an error (default :func:`checkpoint_advice` of ``path``).

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        CorruptCheckpointError: naming ``path``, what is wrong and ``advice``: a file that fails verification, or
            that torch cannot load (its own message, without its advice to retry with ``weights_only=False``).
        ValueError: an intact file holding Python objects other than tensors and plain containers.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    advice = advice or checkpoint_advice(path)
    try:
        kind = verify_checkpoint(path, full=True, legacy=legacy)
    except CorruptCheckpointError as err:
        raise err.with_advice(advice) from None
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise  # names the file itself (permissions, I/O)
    except Exception as err:  # noqa: BLE001 - whatever torch's unpickler makes of damaged bytes
        text = str(err)
        found = re.search(r"WeightsUnpickler error: ([^\n]*?\.)(?: |$)", text)
        reason = found.group(1) if found else text.split("\n")[0][:300]
        if found and kind == "zip":  # every CRC checked: the file is whole, its content is not ours
            raise ValueError(f"checkpoint {path} is intact but holds Python objects that loading with "
                             f"weights_only=True refuses ({reason}); no command of this pipeline writes those: "
                             "pass a checkpoint of tensors and plain containers") from err
        raise CorruptCheckpointError(path, f"unreadable by torch.load ({type(err).__name__}: {reason})",
                                     advice) from err


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
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)


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
