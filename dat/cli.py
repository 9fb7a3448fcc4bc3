"""The prelude every command module shares: its argparse parser, logging, threads, device, and its run and model.

A command's ``main(argv=None)`` builds its parser with :func:`command_parser` (plus :func:`add_run_arguments` and
:func:`add_machine_arguments` for the usual flags), parses ``argv``, then calls :func:`start`, which sets up logging
to stderr (the rules redirect it to their ``log:`` file), limits torch's threads and resolves ``--device``.
Nothing here knows about the method; the arguments' meaning is documented where they are parsed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from dat.checkpoint import final_selection, load_model
from dat.config import RunConfig
from dat.io import add_device_argument, resolve_device, set_threads, setup_logging


def command_parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The parser of ``python -m <module>``, described by the first paragraph of the module docstring ``doc``."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])


def add_machine_arguments(p: argparse.ArgumentParser) -> None:
    """``--threads`` (torch intra-op threads, the rule's ``threads:``; default torch's own) and ``--device``."""
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    add_device_argument(p)


def add_run_arguments(p: argparse.ArgumentParser, *, data: str | None, out: str) -> None:
    """``--config`` (the run JSON), ``--model`` (its model.pt), ``--data`` (when ``data`` names what it is) and
    ``--out`` (``out`` says which file), the arguments of the commands that evaluate one trained model."""
    p.add_argument("--config", type=Path, required=True, help="run JSON (results/{run}/run.json)")
    p.add_argument("--model", type=Path, required=True, help="trained model.pt")
    if data is not None:
        p.add_argument("--data", type=Path, required=True, help=data)
    p.add_argument("--out", type=Path, required=True, help=f"{out} to write")


def add_starts_argument(p: argparse.ArgumentParser) -> None:
    """``--starts``: the chain-start images of the test-time sampler (default uniform noise)."""
    p.add_argument("--starts", type=Path, default=None,
                   help="npz of chain-start images (key x; the run's aux_ood.npz under sampling.init train); "
                        "default uniform noise")


def start(args: argparse.Namespace, *, threads: bool = True, device: bool = True) -> torch.device | None:
    """Begin a command: log to stderr, then (when its parser has them) apply ``--threads`` and resolve ``--device``.

    Args:
        args: the parsed arguments.
        threads: the parser has ``--threads`` (:func:`add_machine_arguments`).
        device: the parser has ``--device``; False also for commands that resolve it themselves (``dat.train``
            under torchrun).

    Returns:
        the torch device of ``--device`` (``auto``: the first CUDA GPU when one is visible, else the CPU), or None
        when ``device`` is False.

    Raises:
        ValueError: ``--device`` names a CUDA device on a machine without one.
    """
    setup_logging()
    if threads:
        set_threads(args.threads)
    return resolve_device(args.device) if device else None


def load_run_model(args: argparse.Namespace, device: torch.device) -> tuple[RunConfig, nn.Module, dict]:
    """The run JSON of ``--config`` and the weights of ``--model`` it evaluates (``evaluate.weights``: ema or raw).

    Returns:
        (the run's :class:`dat.config.RunConfig`, model in eval mode on ``device``, the checkpoint dict, for
        :func:`dat.checkpoint.checkpoint_record`; its ``selection`` says which checkpoint of the run it is: the record
        ``dat.select_checkpoint`` stored in a selected.pt, else :func:`dat.checkpoint.final_selection`).

    Raises:
        ValueError: naming the run JSON when it is no valid run config; FileNotFoundError for a missing file.
    """
    run = RunConfig.read(args.config)
    model, ckpt = load_model(args.model, run.evaluate.weights, device)
    if ckpt.get("selection") is None:
        ckpt["selection"] = final_selection(run, ckpt)
    return run, model, ckpt


def starts_name(run: RunConfig, path: Path | None) -> str:
    """What the sampler's chains start from, as grid.json and the sample files record it (paper Table 8's column):
    ``noise``; with ``path``, the run's chain source (:attr:`dat.config.RunConfig.chain_source`: the dataset's
    ``sampling.ood_set`` under ``sampling.init: ood``, the ood_set of the run's bce or ratio block under ``train``),
    else the path."""
    if path is None:
        return "noise"
    source = run.chain_source
    return str(path) if source == "noise" else source
