"""One home for configuration: validate a config, check it across blocks, and resolve every run once.

The workflow (``workflow/rules/common.smk``) and any script that reads ``config.yaml`` go through this module:

- :func:`validate` checks a config against the package's schema (``dat/schemas/config.schema.yaml``, the file the
  workflow's Snakemake ``validate`` reads too) and fills in its defaults, as Snakemake's ``validate`` does (the
  jsonschema FAQ's default-setting validator), so that every resolved file shows the values a run uses.
- :class:`Resolved` holds a validated config, runs every cross-check beyond the schema (a missing reference, an OOD
  set without its folder, runs of one table sampling from different chain sources, ...) raising
  :class:`ConfigError` naming the key, and derives each fact once: a run's method block (``train_overrides``
  merged), a dataset's sampling/evaluate blocks (dataset keys merged over the global ones), the auxiliary block,
  the objective, the chain source, which runs select their best-FID snapshot, the rows of each table present now,
  the download folders, and the files each table, figure group and target reads or writes.
- The resolved views a job reads are plain JSON (``run.json``, ``train.json``, ``dataset.json``, the table and
  figure specs); the commands parse them into the typed frozen views of :mod:`dat.config`.

Torch-, numpy- and Snakemake-free: the workflow imports it while it builds the DAG (tests/test_config.py checks it).
Only :meth:`Resolved.rows_present` and the data checks look at the file system, and nothing here writes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from dat.config import (EVALUATION_DATASET_KEYS, SCHEMA_PATH, TrainConfig, auxiliary_block, deep_merge, load_schema,
                        training_view)
from dat.registry import DATASET_OOD_SETS, MANUAL_DOWNLOADS, ROOTED_OOD_SETS, missing_message, switch_file
from dat.report_spec import (FIGURE_EXTENSIONS, FIGURE_GROUPS, INTERVAL_KINDS, METRICS_INPUTS, SAMPLING_KINDS,
                             TABLE_INPUTS, chain_source, figure_stems, marked_label, mixed_sources, row_label)

__all__ = ["ConfigError", "Resolved", "SCHEMA_PATH", "auxiliary_block", "read_yaml", "validate"]

# the ImageNet-backed sources and OOD sets read one ImageNet folder, so the rehearsal writes one fixture kind there
_FIXTURE_KINDS = {"restricted_imagenet": "imagenet", "imagenet_minus_rimagenet": "imagenet"}


class ConfigError(ValueError):
    """A config that the schema or a cross-check rejects; the message names the key (``config: <key path>: ...``)."""


def _default_setting_validator():
    """Draft 2020-12 validator class that fills in ``default`` of each property as it validates (the jsonschema
    FAQ's recipe, which Snakemake's ``validate`` uses: defaults land in the instance, in schema order), and whose
    ``integer`` is an int: JSON Schema also counts an integral float (``batch_size: 32.0``) as an integer, which
    then fails deep inside torch (``manual_seed expected a long``) instead of here."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        for name, sub in props.items():
            if "default" in sub and isinstance(instance, dict):
                instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    types = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool))
    return validators.extend(Draft202012Validator, {"properties": properties}, type_checker=types)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that rejects a key given twice in one mapping (PyYAML keeps the last one silently: a
    table row ``DAT: fmnist_dat`` followed by ``DAT: fmnist_at`` would print Standard AT's numbers as DAT's)."""


def _strict_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden, as YAML allows
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"{loader.name}:{key_node.start_mark.line + 1}: key {key!r} is given twice in one "
                              f"mapping (first on line {seen[key] + 1}); YAML would keep the last one silently")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def read_yaml(path: str | Path) -> Any:
    """A YAML config file, parsed like ``yaml.safe_load`` but rejecting duplicate keys.

    Raises:
        ConfigError: naming the file, the line and the key given twice.
        FileNotFoundError: ``path`` does not exist.
    """
    with open(path, encoding="utf-8") as fh:
        loader = _StrictLoader(fh)
        loader.name = str(path)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()


def validate(config: dict, where: str = "config") -> dict:
    """Validate ``config`` against the package's schema and fill in the schema's defaults, in place.

    Args:
        config: a config as loaded from YAML (``config.yaml``, ``config/smoke.yaml``, ...), or the same with a
            dataset's sampling/evaluate keys merged into the global blocks.
        where: the prefix of the error message.

    Returns:
        ``config`` itself, its defaults filled in.

    Raises:
        ConfigError: naming the key path of the first violation and the schema's message.
    """
    from jsonschema.exceptions import ValidationError

    validator = _default_setting_validator()(load_schema())
    try:
        validator.validate(config)
    except ValidationError as err:
        path = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{where}: {path}: {err.message}") from None
    return config


@dataclass(frozen=True)
class Missing:
    """Data a job needs that is not in place and that no rule can download: the key and what to do."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def replicate_name(run: str, seed: int) -> str:
    """The run key of seed ``seed`` of ``run`` when it is not the run's first seed: ``{run}_seed{seed}``."""
    return f"{run}_seed{seed}"


def expand_seeds(runs: dict[str, dict]) -> tuple[dict[str, dict], dict[str, list[tuple[int, str]]], set[str]]:
    """One run per seed: ``runs.<run>.seeds: [s0, s1, ...]`` (issue 22, the paper's mean +- std over seeds).

    The first seed keeps the run's key (so a single-seed config and the results of its first seed stay what they
    were); every other seed ``s`` becomes the run ``{run}_seed{s}``, the same run with ``seed: s``. A replicate of
    seed ``s`` of a run that starts from another run (``init_from: <run>``) starts from that run's seed ``s``: its
    own replicate when it lists ``s``, the run itself when its seed is ``s``, else a training-only replicate
    ``{init_from}_seed{s}`` made here (each seed is its own chain stage 1 -> stage 2; the training-only replicate is
    evaluated only where a table names it). A run's first seed keeps its ``init_from`` as written.

    Args:
        runs: ``config["runs"]`` after the schema (each run has ``seed`` or ``seeds``).

    Returns:
        ``(expanded, replicates, implicit)``: every run key -> its block with ``seed`` set and no ``seeds``;
        run key -> ``[(seed, run key), ...]`` of each run listing several seeds (its first seed first, the run
        itself); the keys of the training-only replicates.

    Raises:
        ConfigError: a run with both or neither of ``seed`` and ``seeds``, or a replicate key that is already a run.
    """
    expanded: dict[str, dict] = {}
    replicates: dict[str, list[tuple[int, str]]] = {}
    for name, r in runs.items():
        if ("seed" in r) == ("seeds" in r):
            raise ConfigError(f"config: runs.{name}: give seed (one training seed) or seeds (a list), "
                              f"{'not both' if 'seed' in r else 'one of them'}")
        seeds = list(r["seeds"]) if "seeds" in r else [r["seed"]]
        base = {**{k: v for k, v in r.items() if k != "seeds"}, "seed": seeds[0]}
        expanded[name] = base
        if len(seeds) > 1:
            replicates[name] = [(seeds[0], name)]
    for name in replicates:
        for seed in list(runs[name]["seeds"])[1:]:
            key = replicate_name(name, seed)
            if key in runs:
                raise ConfigError(f"config: runs.{name}.seeds: seed {seed}'s run key {key!r} is already a run")
            expanded[key] = {**copy.deepcopy(expanded[name]), "seed": seed}
            replicates[name].append((seed, key))
    implicit: set[str] = set()

    def seed_of(run: str, seed: int) -> str:
        if expanded[run]["seed"] == seed:
            return run
        for s, key in replicates.get(run, []):
            if s == seed:
                return key
        key = replicate_name(run, seed)
        if key in runs:
            raise ConfigError(f"config: runs.{run}: the training-only run of seed {seed} that a replicate starts "
                              f"from would be {key!r}, which is already a run")
        if key not in expanded:
            expanded[key] = {**copy.deepcopy(expanded[run]), "seed": seed}
            implicit.add(key)
            init = expanded[key].get("init_from")
            if isinstance(init, str) and init in runs:
                expanded[key]["init_from"] = seed_of(init, seed)
        return key

    for name, reps in replicates.items():
        for seed, key in reps[1:]:
            init = expanded[key].get("init_from")
            if isinstance(init, str) and init in runs and init != name:
                expanded[key]["init_from"] = seed_of(init, seed)
    return expanded, replicates, implicit


class Resolved:
    """A validated config, checked across blocks, with every derived fact computed in one place.

    Args:
        config: the config with the schema's defaults filled in (:func:`validate`, or Snakemake's ``validate`` on
            the same schema file). It is not modified; :attr:`tables` is the resolved copy of ``tables``.
        check: run every cross-check now (the workflow does; ``False`` only for code that resolved it before).

    Raises:
        ConfigError: a cross-check fails (see :meth:`check`).
    """

    def __init__(self, config: dict, check: bool = True):
        self.config = config
        # one run per seed (expand_seeds): replicate keys are runs like any other from here on
        self.runs, self.replicates, self.training_only = expand_seeds(config["runs"])
        self.datasets: dict[str, dict] = config["datasets"]
        self._left_out: list[str] = []
        self._switches: dict[str, None] = {}  # one line per if_present block state (ordered, without repeats)
        if check:
            self.check()

    # ---- if_present: keys that a file turns on as the DAG is built ----
    def present(self, dataset: str, ood_set: str) -> Path | None:
        """The file that turns an ``if_present`` block naming ``ood_set`` on for the runs of ``dataset``
        (:func:`dat.registry.switch_file` under ``datasets.<dataset>.ood_roots.<ood_set>``), or None when the
        dataset has no folder for that set (the block does not apply to it)."""
        root = self.ood_root(dataset, ood_set)
        return None if root is None else switch_file(ood_set, root)

    def _if_present(self, block: dict, dataset: str, where: str) -> dict:
        """``block`` without its ``if_present`` key, with that key's values set over it when their file is present
        (:meth:`present`); each state is recorded once for :attr:`left_out` (the dry run prints it)."""
        switch = block.get("if_present")
        out = {k: v for k, v in block.items() if k != "if_present"}
        if not switch:
            return out
        path = self.present(dataset, switch["ood_set"])
        if path is None:
            return out
        keys = ", ".join(f"{k} {v}" for k, v in switch.items())
        if path.exists():
            self._switches[f"if_present: the {dataset} runs use {where} {keys}: {path} is present"] = None
            return {**out, **switch}
        self._switches[f"if_present: the {dataset} runs keep {where} as written until {path} exists (then {keys})"] \
            = None
        return out

    # ---- merges (each block merged once, through dat.config.deep_merge) ----
    @cached_property
    def _methods(self) -> dict[str, dict]:
        out = {}
        for run, r in self.runs.items():
            if r["method"] not in self.config["methods"]:
                continue
            block = deep_merge(self.config["methods"][r["method"]], r.get("train_overrides"))
            for key in ("bce", "ratio"):
                if isinstance(block.get(key), dict):
                    block[key] = self._if_present(block[key], r["dataset"], f"train.{key}")
            out[run] = block
        return out

    def method_block(self, run: str) -> dict:
        """The run's method block deep-merged with its ``train_overrides`` (a copy)."""
        return copy.deepcopy(self._methods[run])

    @cached_property
    def _samplings(self) -> dict[str, dict]:
        return {name: self._if_present(deep_merge(self.config["sampling"], ds.get("sampling")), name, "sampling")
                for name, ds in self.datasets.items()}

    def sampling(self, dataset: str) -> dict:
        """The sampling block of ``dataset``: the global one deep-merged with the dataset's ``sampling`` keys, its
        ``if_present`` keys set when their file is present (:meth:`_if_present`; a copy)."""
        return copy.deepcopy(self._samplings[dataset])

    def run_sampling(self, run: str) -> dict:
        """The sampling block of a run: its dataset's, with the run's ``sampling_overrides`` (steps_grid) merged."""
        r = self.runs[run]
        return deep_merge(self.sampling(r["dataset"]), r.get("sampling_overrides"))

    def evaluate(self, dataset: str) -> dict:
        """The evaluate block of ``dataset``: the global one deep-merged with the dataset's ``evaluate`` keys."""
        return deep_merge(self.config["evaluate"], self.datasets[dataset].get("evaluate"))

    # ---- derived facts of a run ----
    def dataset_of(self, run: str) -> str:
        return self.runs[run]["dataset"]

    def aux_block(self, run: str) -> dict:
        """:func:`auxiliary_block` of the run's method block."""
        return auxiliary_block(self._methods[run])

    def objective(self, run: str) -> str:
        """at, dat, ratio, jem or ebjdat (:attr:`dat.config.TrainConfig.objective`)."""
        return TrainConfig.from_dict(self._methods[run]).objective

    def has_bce(self, run: str) -> bool:
        """The run trains DAT's BCE branch (stage 2): it has stage-2 training curves."""
        return bool(self._methods[run].get("bce"))

    def has_snapshots(self, run: str) -> bool:
        """The run's method saves weight snapshots (paper Figure 4, the best-FID selection)."""
        return bool(self._methods[run].get("snapshots"))

    def chain_source(self, run: str) -> str:
        """Where the run's test-time chains start (:func:`dat.report_spec.chain_source`)."""
        return chain_source(self.sampling(self.dataset_of(run)), self._methods[run])

    def selects_checkpoint(self, run: str) -> bool:
        """True when the run's evaluations measure its best-FID weight snapshot (``evaluate.checkpoint: best_fid``
        and a method that saves snapshots); any other run is evaluated at its final model.pt."""
        return self.evaluate(self.dataset_of(run))["checkpoint"] == "best_fid" and self.has_snapshots(run)

    # ---- resolved files (the JSON the jobs read) ----
    def dataset_cfg(self, dataset: str, evaluation: bool = True) -> dict:
        """The dataset block without the keys that reach the commands through the run JSON (sampling, evaluate,
        label). ``evaluation=False`` also leaves out the keys only evaluation reads
        (:data:`dat.config.EVALUATION_DATASET_KEYS`): that is results/data/{dataset}/dataset.json, so that a new OOD
        set or counterfactual radius never re-prepares data."""
        leave_out = {"sampling", "evaluate", "label"} | (set() if evaluation else set(EVALUATION_DATASET_KEYS))
        return {"name": dataset, **{k: v for k, v in self.datasets[dataset].items() if k not in leave_out}}

    def run_cfg(self, run: str) -> dict:
        """Everything one run's commands read: results/{run}/run.json."""
        r = self.runs[run]
        return {
            "run": run,
            "method": r["method"],
            "seed": r["seed"],
            "init_from": r.get("init_from"),
            "dataset": self.dataset_cfg(r["dataset"]),
            "model": {k: v for k, v in self.config["models"][r["model"]].items() if k != "label"},
            "train": self.method_block(run),
            "sampling": self.run_sampling(run),
            "evaluate": self.evaluate(r["dataset"]),
        }

    def train_cfg(self, run: str) -> dict:
        """The training view of :meth:`run_cfg` (:func:`dat.config.training_view`): results/{run}/train.json, the
        only config file training reads, so an evaluation setting never retrains."""
        return training_view(self.run_cfg(run))

    def init_from(self, run: str) -> str | dict | None:
        """A run name, a published checkpoint block ``{path, format, sha256?, url?}``, or None."""
        return self.runs[run].get("init_from")

    # ---- tables ----
    @cached_property
    def tables(self) -> dict[str, dict]:
        """``tables`` with each ``rows_if_present`` row appended to ``rows`` when its published checkpoint
        (``runs.<run>.init_from.path``) exists now; :attr:`left_out` says which file adds each other one."""
        tables = copy.deepcopy(self.config["tables"])
        for name, table in tables.items():
            for label, run in (table.get("rows_if_present") or {}).items():
                path = self.runs[run]["init_from"]["path"]
                if Path(path).is_file():
                    table["rows"][label] = run
                else:
                    url = self.runs[run]["init_from"].get("url")
                    self._left_out.append(f"tables.{name}: row {label!r} ({run}) left out until {path} exists"
                                          + (f" (published at {url})" if url else ""))
        return tables

    @property
    def left_out(self) -> list[str]:
        """One line per ``rows_if_present`` row left out of its table, naming the file that adds it, and one per
        state of an ``if_present`` block (on: the file that turned it on; off: the file that would)."""
        self.tables, self._samplings, self._methods  # noqa: B018 (resolves them)
        return list(self._left_out) + list(self._switches)

    def table_rows(self, name: str) -> dict[str, str]:
        """Row label -> run of table ``name``, rows present now included."""
        return dict(self.tables[name]["rows"])

    def kind_rows(self, kind: str) -> dict[str, str]:
        """Rows (label -> run) of every table of ``kind``, merged in config order (a run keeps its first label)."""
        rows: dict[str, str] = {}
        for table in self.tables.values():
            if table["kind"] == kind:
                for label, run in table["rows"].items():
                    if run not in rows.values():
                        rows[label] = run
        return rows

    def _label(self, block: str, key: str) -> str:
        return self.config[block][key].get("label", key)

    def seeds(self, run: str) -> list[tuple[int, str]]:
        """``(seed, run key)`` of every seed of ``run`` (``runs.<run>.seeds``, :func:`expand_seeds`), first seed
        first; ``[(seed, run)]`` for a run of one seed."""
        return list(self.replicates.get(run, [(self.runs[run]["seed"], run)]))

    def training_starts(self, run: str) -> str:
        """Where the run's contrastive chains (DAT) or out-batches (RATIO) start in training: ``noise``, the name of
        its auxiliary set, or ``none`` for a method without either."""
        return chain_source({"init": "train"}, self._methods[run]) if self.aux_block(run) else "none"

    def spec_rows(self, rows: dict[str, str], seeds: bool = False, label_starts: bool = False) -> list[dict]:
        """Spec rows (:mod:`dat.report_spec`) of label -> run: the printed label says what a RATIO run was trained
        against when it is not the paper's set (:func:`dat.report_spec.row_label`), and with ``label_starts``
        where each run's training chains start (:meth:`training_starts`; a table comparing them, whose runs switch
        with ``if_present``). ``seeds=True`` (tables) adds the row's ``seed``, and ``replicates`` (``[{seed,
        run_dir}, ...]``, first seed first) when the run lists several seeds; figures draw the first seed's run."""
        out = []
        for label, run in rows.items():
            printed = row_label(label, self._methods[run])
            if label_starts:
                printed = marked_label(printed, f"training starts: {self.training_starts(run)}")
            row = {"label": printed, "run_dir": f"results/{run}"}
            if seeds:
                row["seed"] = self.runs[run]["seed"]
                if run in self.replicates:
                    row["replicates"] = [{"seed": s, "run_dir": f"results/{key}"} for s, key in self.seeds(run)]
            out.append(row)
        return out

    def table_spec(self, name: str) -> dict:
        """results/tables/{name}.spec.json (layout: :mod:`dat.report_spec`)."""
        table = self.tables[name]
        spec = {"kind": table["kind"], "rows": self.spec_rows(table["rows"], seeds=True,
                                                              label_starts=table.get("label_starts", False)),
                "intervals": table.get("intervals", table["kind"] in INTERVAL_KINDS)}
        if table["kind"] == "main":
            spec["dataset_label"] = table.get("dataset_label", table["dataset"])
        if table["kind"] == "reproductions":
            spec["title"] = table.get("title")
            spec["reported"] = table.get("reported", [])
            for row, run in zip(spec["rows"], table["rows"].values()):
                row["dataset"] = self._label("datasets", self.runs[run]["dataset"])
                row["architecture"] = self._label("models", self.runs[run]["model"])
        return spec

    def run_files(self, run: str, relpaths) -> list[str]:
        """results/{run}/<relpath> for each relpath a rule makes for that run (metrics/snapshots.json only where its
        method saves weight snapshots)."""
        return [f"results/{run}/{rel}" for rel in relpaths
                if rel != "metrics/snapshots.json" or self.has_snapshots(run)]

    def table_files(self, name: str) -> list[str]:
        """The run files table ``name`` reads, for each of its rows (:data:`dat.report_spec.TABLE_INPUTS`)."""
        inputs = TABLE_INPUTS[self.tables[name]["kind"]]
        return [path for run in self.tables[name]["rows"].values() for _, key in self.seeds(run)
                for path in self.run_files(key, inputs)]

    def metrics_files(self) -> list[str]:
        """The run files of results/report/metrics.csv (the runs of table1): every metrics JSON the `all` target
        makes for them, so that the table never depends on which evaluations happened to finish first."""
        conditional = self.kind_rows("conditional").values()
        return [path for base in self.tables["table1"]["rows"].values() for _, run in self.seeds(base)
                for path in self.run_files(run, METRICS_INPUTS + ("metrics/snapshots.json",)
                                           + (("metrics/fid_uncond.json",) if base in conditional else ()))]

    # ---- figures and targets ----
    def figure_groups(self, name: str = "main") -> dict[str, dict[str, str]]:
        """Figure group (:data:`dat.report_spec.FIGURE_GROUPS`) -> rows (label -> run) of figure set ``name``:
        ``main`` (the figures of `all`: sample grids, stage-2 curves and Figure 4 of table1's runs, Figures 1/A.3 of
        the counterfactual tables' runs, Figure 3 of the calibration tables', Figure 8 of the conditional tables')
        or ``ablations`` (Figure 2, from the stage-2 runs of ablation_bce_augment). Groups without runs are left out.
        """
        if name == "ablations":
            rows = self.tables.get("ablation_bce_augment", {}).get("rows", {})
            groups = {"bce_curves": {label: run for label, run in rows.items() if self.has_bce(run)}}
        elif name == "main":
            main = self.tables["table1"]["rows"]
            counterfactual = self.kind_rows("counterfactual")
            groups = {
                "samples": main,
                "curves": {label: run for label, run in main.items() if self.has_bce(run)},
                "snapshots": {label: run for label, run in main.items() if self.has_snapshots(run)},
                "counterfactual": counterfactual,
                "counterfactual_grid": counterfactual,
                "reliability": self.kind_rows("calibration"),
                "unconditional": self.kind_rows("conditional"),
            }
        else:
            raise KeyError(f"figure set {name!r}: not one of {FIGURE_SETS}")
        return {group: rows for group, rows in groups.items() if rows}

    def figures_spec(self, name: str) -> dict:
        """results/figures/{name}.spec.json (layout: :mod:`dat.report_spec`)."""
        return {"groups": {group: self.spec_rows(rows) for group, rows in self.figure_groups(name).items()}}

    def figure_inputs(self, name: str) -> list[str]:
        """The run files the figure groups of set ``name`` read."""
        return sorted({path for group, rows in self.figure_groups(name).items() for run in rows.values()
                       for path in self.run_files(run, FIGURE_GROUPS[group].inputs)})

    @staticmethod
    def figure_paths(groups: dict[str, dict[str, str]]) -> list[str]:
        """The PNG and PDF files that figure groups (group -> rows) write."""
        return [f"results/figures/{stem}.{ext}" for group, rows in groups.items()
                for stem in figure_stems(group, list(rows.values())) for ext in FIGURE_EXTENSIONS]

    def all_outputs(self) -> list[str]:
        """The `all` target: every table but the ablation_* ones, the long metrics table and the main figures."""
        return [*(f"results/tables/{t}.tex" for t in self.tables if not t.startswith("ablation_")),
                "results/report/metrics.csv", *self.figure_paths(self.figure_groups("main"))]

    def ablation_outputs(self) -> list[str]:
        """The `ablations` target: the ablation_* tables and Figure 2."""
        return [*(f"results/tables/{t}.tex" for t in self.tables if t.startswith("ablation_")),
                *self.figure_paths(self.figure_groups("ablations"))]

    # ---- data ----
    @cached_property
    def download_roots(self) -> dict[str, str]:
        """source -> folder of every dataset (and dataset OOD set) downloaded (download: true): one job per source,
        never two at once into one folder. Raises ConfigError when one source is downloaded into two folders."""
        roots: dict[str, tuple[str, str]] = {}
        for name, ds in self.datasets.items():
            if not ds["download"]:
                continue
            wanted = [(ds["source"], ds["root"], f"datasets.{name}.root")]
            wanted += [(ood, root, f"datasets.{name}.ood_roots.{ood}")
                       for ood, root in (ds.get("ood_roots") or {}).items() if ood in ds["ood_sets"]]
            for source, root, key in wanted:
                if source in MANUAL_DOWNLOADS:  # no downloader: missing_data says what to fetch by hand
                    continue
                if roots.setdefault(source, (root, key))[0] != root:
                    raise ConfigError(f"config: {key} = {root!r} differs from {roots[source][1]} = "
                                      f"{roots[source][0]!r}; one folder per downloaded dataset")
        return {source: root for source, (root, _) in roots.items()}

    def dataset_download(self, dataset: str) -> tuple[str | None, Missing | None]:
        """(the source whose download job the dataset waits for, or None; what is missing, or None)."""
        ds = self.datasets[dataset]
        message = missing_message(ds["source"], ds["root"], ds["download"])
        missing = Missing(f"datasets.{dataset}.root", message) if message else None
        source = ds["source"] if ds["download"] and ds["source"] in self.download_roots else None
        return source, missing

    def ood_download(self, dataset: str, ood: str) -> tuple[str | None, Missing | None]:
        """The same for an OOD set read from a folder of its own (nothing for the offline sets). A dataset OOD set
        is downloaded when its dataset downloads, or when another dataset downloads that source into the same
        folder (RestrictedImageNet's CIFAR/SVHN OOD sets share the CIFAR datasets' download jobs)."""
        ds = self.datasets[dataset]
        if ood not in ROOTED_OOD_SETS:
            return None, None
        root = ds["ood_roots"][ood]
        download = ood in DATASET_OOD_SETS and (ds["download"] or self.download_roots.get(ood) == root)
        message = missing_message(ood, root, download)
        return (ood if download else None), (Missing(f"datasets.{dataset}.ood_roots.{ood}", message)
                                             if message else None)

    def ood_root(self, dataset: str, name: str) -> str | None:
        """The folder of an OOD set read from one (``datasets.<dataset>.ood_roots.<name>``), else None."""
        return (self.datasets[dataset].get("ood_roots") or {}).get(name)

    def inception_score(self, dataset: str) -> dict | None:
        """The dataset's ``evaluate.fid.inception_score`` block, or None when IS is off (absent or not enabled)."""
        block = self.evaluate(dataset)["fid"].get("inception_score") or {}
        return block if block.get("enabled") else None

    def inception_score_input(self, dataset: str) -> tuple[str | None, Missing | None]:
        """(the IS weights file name whose download job a run of ``dataset`` waits for, or None when IS is off;
        what is missing: the weights file when it is not there and no url can bring it)."""
        block = self.inception_score(dataset)
        if block is None:
            return None, None
        if not block.get("url") and not Path(block["weights"]).exists():
            return None, Missing("evaluate.fid.inception_score.weights", f"{block['weights']} is not there and url is "
                                 f"null; put the file there (sha256 {block['sha256']}...) or set "
                                 "evaluate.fid.inception_score.url")
        return Path(block["weights"]).name, None

    def init_input(self, run: str) -> tuple[str | None, Missing | None]:
        """(the checkpoint the run starts from: another run's model.pt, a published file, or None; what is missing:
        a published file that is not there, with where it is published)."""
        init = self.init_from(run)
        if init is None or isinstance(init, str):
            return (f"results/{init}/model.pt" if init else None), None
        if not Path(init["path"]).exists():
            where = f" (published at {init['url']})" if init.get("url") else ""
            return None, Missing(f"runs.{run}.init_from.path", f"the published checkpoint {init['path']} is not there; "
                                 f"download it{where} and put it at that path, or point the path at your copy")
        return init["path"], None

    @cached_property
    def is_weights(self) -> dict[str, dict]:
        """Weights file name -> the inception_score block of every dataset that computes IS (one download job per
        file). Raises ConfigError when two datasets name one file with another path, url or sha256."""
        found: dict[str, dict] = {}
        for name in self.datasets:
            block = self.inception_score(name)
            if block is None:
                continue
            key = Path(block["weights"]).name
            if found.setdefault(key, block) != block:
                raise ConfigError(f"config: datasets.{name}: evaluate.fid.inception_score names the weights file {key} "
                                  f"with another path, url or sha256 than another dataset ({found[key]})")
        return found

    def fixture_spec(self) -> dict:
        """The argument of :func:`dat.rehearsal.build` for ``rehearsal_fixtures: true``: each data folder and its
        fixture kind, and each published checkpoint (``init_from: {path, ...}``) with the model it must fit."""
        data = {}
        for ds in self.datasets.values():
            data[ds["root"]] = _FIXTURE_KINDS.get(ds["source"], ds["source"])
            for ood, root in (ds.get("ood_roots") or {}).items():
                data[root] = _FIXTURE_KINDS.get(ood, ood)
        checkpoints = []
        for run in self.runs.values():
            if isinstance(run.get("init_from"), dict):
                ds, model = self.datasets[run["dataset"]], self.config["models"][run["model"]]
                checkpoints.append({"path": run["init_from"]["path"], "format": run["init_from"]["format"],
                                    "arch": model["arch"], "kwargs": model.get("kwargs") or {},
                                    "num_classes": ds["num_classes"], "channels": ds["channels"],
                                    "mean": ds["mean"], "std": ds["std"]})
        return {"data": data, "checkpoints": checkpoints}

    # ---- cross-checks ----
    def check(self) -> None:
        """Every check beyond the schema, in order: references; rows_if_present; each dataset's merged
        sampling/evaluate blocks against the schema; distinct snapshot seeds; each run's training block, snapshots
        under evaluate.weights raw and auxiliary OOD sets; sampling chain starts; download folders; IS weights.

        Raises:
            ConfigError: the first failing check, naming the key.
        """
        self.check_references()
        self.check_rows_if_present()
        self.check_dataset_overrides()
        self.check_snapshot_seeds()
        for run in self.runs:
            self.check_run(run)
        self.check_sampling_starts()
        self.download_roots  # noqa: B018 (raises on two folders for one source)
        self.is_weights  # noqa: B018

    def check_references(self) -> None:
        """A run, table or dataset that points at something undefined; mean/std of the wrong length; an OOD set
        without its folder."""
        cfg = self.config
        for run, r in self.runs.items():
            for key, block in (("dataset", "datasets"), ("model", "models"), ("method", "methods")):
                if r[key] not in cfg[block]:
                    raise ConfigError(f"config: runs.{run}.{key} = {r[key]!r} is not a key of {block}: "
                                      f"{sorted(cfg[block])}")
            init = r.get("init_from")
            if isinstance(init, str) and init not in self.runs:
                raise ConfigError(f"config: runs.{run}.init_from = {init!r} is not a run: {sorted(self.runs)}")
            if init == run:
                raise ConfigError(f"config: runs.{run}.init_from names the run itself")
        for name, table in cfg["tables"].items():
            for label, run in table["rows"].items():
                if run not in self.runs:
                    raise ConfigError(f"config: tables.{name}.rows.{label} = {run!r} is not a run: {sorted(self.runs)}")
            if table["kind"] == "main" and "dataset" not in table:
                raise ConfigError(f"config: tables.{name}.dataset is required (kind main)")
            if "dataset" in table and table["dataset"] not in self.datasets:
                raise ConfigError(f"config: tables.{name}.dataset = {table['dataset']!r} is not a key of datasets")
            if table.get("reported") and table["kind"] != "reproductions":
                raise ConfigError(f"config: tables.{name}.reported is only printed by tables of kind reproductions")
        for name, ds in self.datasets.items():
            if len(ds["mean"]) != ds["channels"] or len(ds["std"]) != ds["channels"]:
                raise ConfigError(f"config: datasets.{name}.mean/std need {ds['channels']} values (channels)")
            for ood in ds["ood_sets"]:
                if ood in ROOTED_OOD_SETS and ood not in (ds.get("ood_roots") or {}):
                    raise ConfigError(f"config: datasets.{name}.ood_sets lists {ood!r} but "
                                      f"datasets.{name}.ood_roots.{ood} is not set")

    def check_rows_if_present(self) -> None:
        """A rows_if_present row must name a run with a published checkpoint, under a label not in ``rows``."""
        for name, table in self.config["tables"].items():
            for label, run in (table.get("rows_if_present") or {}).items():
                if not isinstance(self.runs.get(run, {}).get("init_from"), dict):
                    raise ConfigError(f"config: tables.{name}.rows_if_present.{label} = {run!r} must be a run with "
                                      f"init_from: {{path, ...}} (a published checkpoint)")
                if label in table["rows"]:
                    raise ConfigError(f"config: tables.{name}: row label {label!r} is in rows and rows_if_present")

    def check_dataset_overrides(self) -> None:
        """Each dataset's merged sampling/evaluate blocks validate like the global ones (a typo fails here)."""
        for name in self.datasets:
            merged = {**self.config, "sampling": self.sampling(name), "evaluate": self.evaluate(name)}
            try:
                validate(merged, where=f"config: datasets.{name}.sampling/evaluate overrides are invalid")
            except ConfigError as err:
                raise ConfigError(str(err)) from None

    def check_snapshot_seeds(self) -> None:
        """The snapshot FIDs (Figure 4, the best-FID checkpoint) draw chains of their own: a checkpoint chosen on the
        grid's or the final samples would be judged by the samples it was chosen on."""
        for name in self.datasets:
            s = self.sampling(name)
            for key in ("seed_grid", "seed_final"):
                if s["seed_snapshots"] == s[key]:
                    raise ConfigError(f"config: sampling.seed_snapshots (dataset {name}) = {s['seed_snapshots']} "
                                      f"equals sampling.{key}; the snapshot FIDs need chains of their own")

    def check_run(self, run: str) -> None:
        """The run's training block parses (:class:`dat.config.TrainConfig`); an EMA run's snapshots are not
        evaluated as raw weights; its auxiliary OOD file or folder is there."""
        r, block = self.runs[run], self._methods[run]
        try:
            TrainConfig.from_dict(block, where=f"runs.{run} (method {r['method']})")
        except ValueError as err:
            raise ConfigError(f"config: {err}") from None
        if block.get("snapshots") and block.get("ema_decay") and self.evaluate(r["dataset"])["weights"] == "raw":
            raise ConfigError(  # dat.train: the snapshots of an EMA run keep the EMA weights only
                f"config: runs.{run}: its weight snapshots (method {r['method']}: snapshots, ema_decay "
                f"{block['ema_decay']}) hold the EMA weights only, and evaluate.weights of dataset {r['dataset']} is "
                "raw; set it to ema, or ema_decay to null")
        ood_set = self.aux_block(run).get("ood_set") or ""
        if ood_set.startswith(("npz:", "file:")) and not Path(ood_set.split(":", 1)[1]).exists():
            raise ConfigError(f"config: runs.{run}: the auxiliary OOD file {ood_set.split(':', 1)[1]} (ood_set) "
                              "does not exist")
        if ood_set in ROOTED_OOD_SETS and ood_set not in (self.datasets[r["dataset"]].get("ood_roots") or {}):
            raise ConfigError(f"config: runs.{run}: ood_set {ood_set!r} needs datasets.{r['dataset']}"
                              f".ood_roots.{ood_set}")

    def check_sampling_starts(self) -> None:
        """sampling.init ood needs its set (and the set's folder); every run of one dataset in a table that reports
        FID or T (:data:`dat.report_spec.SAMPLING_KINDS`) starts its chains from one source, unless the table says
        mixed_starts: true."""
        for name in self.datasets:
            s = self.sampling(name)
            if s["init"] != "ood":
                continue
            ood = s.get("ood_set")
            if not ood:
                raise ConfigError(f"config: sampling.init ood (datasets.{name}) needs sampling.ood_set")
            if ood in ROOTED_OOD_SETS and ood not in (self.datasets[name].get("ood_roots") or {}):
                raise ConfigError(f"config: datasets.{name}: sampling.ood_set {ood!r} needs "
                                  f"datasets.{name}.ood_roots.{ood}")
        for name, table in self.tables.items():
            if table["kind"] not in SAMPLING_KINDS or table["mixed_starts"]:
                continue
            rows = {run: (self.dataset_of(run), self.chain_source(run)) for run in table["rows"].values()}
            for dataset, sources in mixed_sources(rows).items():
                listed = ", ".join(f"{run}: {src}" for run, src in sources.items())
                raise ConfigError(
                    f"config: tables.{name}: its {dataset} runs start their sampling chains from different sources "
                    f"({listed}); give them one source (sampling.init, datasets.{dataset}.sampling) or set "
                    f"tables.{name}.mixed_starts: true")


FIGURE_SETS = ("main", "ablations")  # results/figures/{set}.spec.json: the figures of `all`, Figure 2 of `ablations`


def load(config: dict) -> Resolved:
    """Validate (defaults filled, in place), check and resolve a config loaded from YAML; raises ConfigError."""
    return Resolved(validate(config))
