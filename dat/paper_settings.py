"""The settings ledger: every paper-scale setting of every run of ``config.yaml`` with its source.

``docs/paper-settings.yaml`` lists entries ``{scope, key, value, source, deviation?, pending?}``:

- ``key`` is a dotted path into one run's resolved views (:func:`run_settings`): ``run.*`` (method, seed, init_from),
  ``dataset.*``, ``model.*``, ``train.*`` (the method block of train.json), ``sampling.*`` and ``evaluate.*`` (the
  blocks of run.json).
- ``scope`` names the runs an entry applies to: ``{}`` (every run that has the key), or one of ``run``, ``method``,
  ``dataset``, ``model`` with a name or a list of names. For one run and key the most specific matching entry
  holds (a run entry over a method/dataset/model entry over ``{}``); two matching entries of equal rank are an error.
- ``source`` cites the paper (section, table) or the authors' released file and line (aliases such as ``{C10}`` are
  expanded from the ledger's ``aliases``), or says the key is not a paper setting (engineering).
- ``deviation`` says why our value differs from the paper or from the authors' code; ``pending`` marks an entry
  whose key has not landed in config.yaml yet (it is listed, not checked).

:func:`check` compares each run's resolved settings with the ledger (tests/test_paper_settings.py);
:func:`render` writes docs/paper-settings.md (``python -m dat.paper_settings --write docs/paper-settings.md``).
Torch-free.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

LEDGER = Path(__file__).resolve().parents[1] / "docs" / "paper-settings.yaml"
SCOPE_RANK = {"run": 2, "method": 1, "dataset": 1, "model": 1}
VIEWS = ("dataset", "model", "train", "sampling", "evaluate")


def _flat(tree: dict, prefix: str) -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_settings(resolved, run: str) -> dict:
    """Dotted key -> value of every leaf of one run's resolved config (:meth:`dat.resolve.Resolved.run_cfg`): the
    keys of its train.json, its dataset block (evaluation keys included) and its sampling and evaluate blocks."""
    cfg = resolved.run_cfg(run)
    out = {}
    for view in VIEWS:
        out.update(_flat(cfg[view] or {}, f"{view}."))
    out["run.method"], out["run.seed"] = cfg["method"], cfg["seed"]
    for key, value in resolved.config["runs"][run].items():  # any other run-level key, overrides excepted
        if key not in ("dataset", "model", "method", "seed", "seeds", "init_from", "train_overrides",
                       "sampling_overrides"):
            out[f"run.{key}"] = value
    if run in resolved.replicates:  # the seeds of a run with several (its first seed is run.seed)
        out["run.seeds"] = [seed for seed, _ in resolved.seeds(run)]
    init = cfg["init_from"]
    if isinstance(init, dict):
        out.update(_flat(init, "run.init_from."))
    else:
        out["run.init_from"] = init
    return out


def load_ledger(path: Path = LEDGER) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _names(value) -> list:
    return value if isinstance(value, list) else [value]


def _matches(scope: dict, run: str, r: dict) -> bool:
    for kind, names in scope.items():
        have = run if kind == "run" else r[kind]
        if have not in _names(names):
            return False
    return True


def _rank(scope: dict) -> int:
    return max((SCOPE_RANK[k] for k in scope), default=0)


def entry_for(ledger: dict, run: str, r: dict, key: str) -> dict | None:
    """The ledger entry that holds for ``run`` (its config ``r``) and ``key``, or None.

    Raises:
        ValueError: two matching entries of the same rank.
    """
    found = [e for e in ledger["entries"] if e["key"] == key and _matches(e.get("scope") or {}, run, r)]
    if not found:
        return None
    best = max(_rank(e.get("scope") or {}) for e in found)
    top = [e for e in found if _rank(e.get("scope") or {}) == best]
    if len(top) > 1:
        raise ValueError(f"ledger: {key} has {len(top)} entries of equal rank for run {run}: "
                         f"{[e.get('scope') for e in top]}")
    return top[0]


def check(resolved, ledger: dict) -> list[str]:
    """One line per disagreement: a resolved value that differs from the ledger, a key of a run that the ledger
    does not cover, and a (non-pending) ledger entry that applies to no run's key."""
    problems, used = [], set()
    # the runs of the config; the other seeds of a run with several (Resolved.replicates) share its settings but
    # seed and init_from (tests/test_seeds.py), and the ledger lists the run's seeds
    for run in resolved.config["runs"]:
        r = resolved.runs[run]
        for key, value in sorted(run_settings(resolved, run).items()):
            try:
                entry = entry_for(ledger, run, r, key)
            except ValueError as err:
                problems.append(str(err))
                continue
            if entry is None:
                problems.append(f"{run}: {key} = {json.dumps(value)} is not in the ledger (add it with its source)")
                continue
            used.add(id(entry))
            if entry.get("pending"):
                continue
            if json.dumps(entry["value"], sort_keys=True) != json.dumps(value, sort_keys=True):
                problems.append(f"{run}: {key}: ledger {json.dumps(entry['value'])} ({entry['source']}), resolved "
                                f"{json.dumps(value)}; change config.yaml back, or the ledger with a deviation")
    for e in ledger["entries"]:
        if id(e) not in used and not e.get("pending"):
            problems.append(f"ledger entry {e['key']} (scope {e.get('scope') or 'all'}) applies to no run")
    return problems


def _scope_text(scope: dict) -> str:
    if not scope:
        return "all runs"
    return "; ".join(f"{kind} {', '.join(_names(names))}" for kind, names in scope.items())


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(ledger: dict) -> str:
    """docs/paper-settings.md: a table per scope (in ledger order), then the deviations and pending entries."""
    aliases = ledger.get("aliases") or {}

    def expand(text: str) -> str:
        for name, target in aliases.items():
            text = text.replace("{" + name + "}", target)
        return text

    lines = ["# Paper settings ledger", "",
             "Generated from `docs/paper-settings.yaml` by `python -m dat.paper_settings --write docs/paper-settings.md`;",
             "`tests/test_paper_settings.py` checks every run of `config.yaml` against it. Keys are dotted paths into a",
             "run's resolved `run.json` (`train.*` is its train.json method block). Sources: \"paper\" is the arXiv",
             "version (Appendix A), \"ICLR\" the ICLR 2026 version, \"authors\" github xuwangyin/DAT at fb2ffc7.", "",
             "Aliases of the authors' files:", ""]
    lines += [f"- `{{{name}}}`: `{target}`" for name, target in aliases.items()]
    order: list[str] = []
    by_scope: dict[str, list] = {}
    for e in ledger["entries"]:
        text = _scope_text(e.get("scope") or {})
        if text not in by_scope:
            order.append(text)
            by_scope[text] = []
        by_scope[text].append(e)
    for text in order:
        lines += ["", f"## {text}", "", "| key | value | source | deviation |", "|---|---|---|---|"]
        for e in by_scope[text]:
            dev = e.get("deviation", "")
            if e.get("pending"):
                dev = f"PENDING: {e['pending']}" + (f"; {dev}" if dev else "")
            lines.append(f"| `{e['key']}` | `{_cell(json.dumps(e['value']))}` | {_cell(expand(e['source']))} | "
                         f"{_cell(expand(dev))} |")
    lines += ["", "## Deviations", ""]
    for e in ledger["entries"]:
        if e.get("deviation"):
            lines.append(f"- `{e['key']}` ({_scope_text(e.get('scope') or {})}) = `{json.dumps(e['value'])}`: "
                         f"{expand(e['deviation'])}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dat.paper_settings", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ledger", type=Path, default=LEDGER)
    p.add_argument("--write", type=Path, default=None, help="write the Markdown ledger here (default: stdout)")
    args = p.parse_args(argv)
    text = render(load_ledger(args.ledger))
    if args.write:
        args.write.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
