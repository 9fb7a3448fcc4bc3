"""Which rehearsal fixtures (:mod:`dat.rehearsal`) are missing, read from their marker files only.

Torch- and NumPy-free, so that the workflow can ask at planning time (``rehearsal_fixtures: true``) and skip the
``python -m dat.rehearsal`` child process, whose torch import costs seconds, when every fixture is in place. A data
root is complete when ``<root>/.rehearsal_fixture.json`` names its kind; a checkpoint when the file exists and
``<file>.rehearsal.json`` holds the spec entry it was built from (so a changed architecture or format rebuilds it).
"""

from __future__ import annotations

import json
from pathlib import Path


def data_marker(root: str | Path) -> Path:
    """The marker file of the fixture data root ``root``."""
    return Path(root) / ".rehearsal_fixture.json"


def checkpoint_marker(path: str | Path) -> Path:
    """The marker file of the fixture checkpoint ``path``: what the file holds."""
    return Path(path).with_name(Path(path).name + ".rehearsal.json")


def _held(marker: Path):
    return json.loads(marker.read_text()) if marker.exists() else None


def data_complete(root: str | Path, kind: str) -> bool:
    """``root`` holds a complete fixture of ``kind`` (a key of :data:`dat.rehearsal.WRITERS`)."""
    held = _held(data_marker(root))
    return isinstance(held, dict) and held.get("kind") == kind


def checkpoint_complete(entry: dict) -> bool:
    """The checkpoint of spec ``entry`` (see :func:`dat.rehearsal.build`) exists and was built from that entry."""
    return Path(entry["path"]).exists() and _held(checkpoint_marker(entry["path"])) == entry


def pending(spec: dict) -> list[str]:
    """The data roots and checkpoint paths of ``spec`` (the argument of :func:`dat.rehearsal.build`) that are not
    complete fixtures: what :func:`dat.rehearsal.build` would write, or reject as a real file it must not touch."""
    return ([root for root, kind in spec.get("data", {}).items() if not data_complete(root, kind)]
            + [entry["path"] for entry in spec.get("checkpoints", []) if not checkpoint_complete(entry)])
