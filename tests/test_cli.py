"""The shared command prelude (dat.cli), progress lines in log files, and the module layering: command modules
(dat/<command>.py with a main) import library modules only, never one another."""

import ast
import logging
from pathlib import Path

import pytest
import torch

from dat import cli
from dat.io import progress

DAT = Path(__file__).resolve().parents[1] / "dat"


def _is_command(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def _dat_imports(tree: ast.Module) -> set[str]:
    """Modules of the dat package a module imports, anywhere in it (function-local imports included)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dat":
                out |= {alias.name for alias in node.names}
            elif node.module.startswith("dat."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("dat.")}
    return out


def test_no_command_module_imports_another():
    trees = {path.stem: ast.parse(path.read_text()) for path in DAT.glob("*.py")}
    commands = {name for name, tree in trees.items() if _is_command(tree)}
    assert {"train", "sample", "grid_search", "eval_robust", "eval_snapshots", "prepare", "fid_ref"} <= commands
    offenders = {name: sorted(_dat_imports(trees[name]) & commands - {name}) for name in commands}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_the_layering_check_sees_an_offender(tmp_path):
    """The check above can fail: a command importing another (as grid_search once imported dat.sample) is found."""
    tree = ast.parse("from dat.sample import generate\nfrom dat import eval_robust\ndef main(argv=None):\n    pass\n")
    assert _is_command(tree) and _dat_imports(tree) == {"sample", "eval_robust"}


def test_progress_lines_reach_a_log_file(caplog):
    """Long loops log where the rule's log file sees them; the items pass through unchanged, a short loop is quiet."""
    with caplog.at_level(logging.INFO, logger="dat.progress"):
        assert list(progress(range(5), "chains", every_s=0.0)) == list(range(5))
    lines = [r.getMessage() for r in caplog.records if r.name == "dat.progress"]
    assert lines[0].startswith("chains: 1/5 (20%)") and lines[-1].startswith("chains: 5/5 (100%)")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dat.progress"):
        assert list(progress(iter("abc"), "quick", total=3, every_s=3600.0)) == ["a", "b", "c"]
    assert not [r for r in caplog.records if r.name == "dat.progress"]


def test_command_prelude_parses_the_shared_arguments(tmp_path):
    p = cli.command_parser("dat.example", "CLI: one line.\n\nMore text.")
    cli.add_run_arguments(p, data="test.npz", out="example.json")
    cli.add_starts_argument(p)
    cli.add_machine_arguments(p)
    assert p.prog == "python -m dat.example" and p.description == "CLI: one line."
    args = p.parse_args(["--config", "r.json", "--model", "m.pt", "--data", "t.npz", "--out", "o.json",
                         "--threads", "1", "--device", "cpu"])
    assert (args.config, args.starts, args.threads) == (Path("r.json"), None, 1)
    threads = torch.get_num_threads()
    try:
        assert cli.start(args) == torch.device("cpu") and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert cli.start(args, threads=False, device=False) is None
    with pytest.raises(SystemExit):
        p.parse_args(["--config", "r.json", "--model", "m.pt", "--out", "o.json"])  # --data is required here

