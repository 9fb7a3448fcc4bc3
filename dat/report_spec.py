"""What ``python -m dat.report`` reads and writes: the run files of each table kind and figure group, the figures'
file names and the layout of the spec files the workflow hands it.

Plain Python (no torch, pandas or matplotlib) so that the Snakemake workflow imports it at parse time: the rules take
their inputs and outputs from here, and ``dat.tables`` / ``dat.figures`` read the same names.

A table spec (``results/tables/{table}.spec.json``, written by the workflow's local rule ``write_table_spec``) is a
JSON object::

    {"kind": "main" | "reproductions" | "sampling" | "conditional" | "ood" | "calibration" | "counterfactual",
     "rows": [{"label": str, "run_dir": "results/{run}"}, ...]}

plus, for kind ``main``, ``"dataset_label"`` (the caption's dataset name; null: the ``dataset`` of fid.json), and for
kind ``reproductions`` ``"title"`` (the caption's title; null: "Baseline reproductions"), ``"reported"`` (constants
cited in the config: ``label``, ``source``, ``dataset`` and any of ``architecture``, ``acc``, ``robust_acc`` in
percent, ``threat_model``, ``fid``, ``is``) and per row ``"dataset"`` and ``"architecture"`` (printed names).

A figures spec (``results/figures/{figures}.spec.json``, rule ``write_figures_spec``) maps figure groups to their
rows: ``{"groups": {group: [{"label": str, "run_dir": str}, ...]}}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dat.config import auxiliary_block

# table kind -> the run files it reads for each of its rows (dat.report never recomputes a metric); grid.json is
# optional for kinds main and reproductions (without it T is the steps recorded in fid.json)
TABLE_INPUTS: dict[str, tuple[str, ...]] = {
    "main": ("metrics/robust.json", "metrics/fid.json", "grid.json"),
    "reproductions": ("metrics/robust.json", "metrics/fid.json", "grid.json"),
    "sampling": ("grid.json",),
    "conditional": ("metrics/fid.json", "metrics/fid_uncond.json"),
    "ood": ("metrics/ood.json",),
    "calibration": ("metrics/calibration.json",),
    "counterfactual": ("metrics/counterfactual.json",),
}

# the table kinds whose LaTeX prints a 95% interval after each single-run number by default (the tables of one
# column per metric); the wide ones (T x runs, OOD sets x attacks, radii x runs) keep theirs in the CSV twin. A
# table's `intervals` key overrides it (true/false)
INTERVAL_KINDS = ("main", "reproductions", "conditional", "calibration")

# the run files the long metrics table (results/report/metrics.csv) reads: every metrics/*.json there is, and grid.json;
# these are the ones each run of it has
METRICS_INPUTS = (
    "metrics/fid.json",
    "metrics/robust.json",
    "metrics/ood.json",
    "metrics/calibration.json",
    "metrics/counterfactual.json",
    "grid.json",
)


@dataclass(frozen=True)
class FigureGroup:
    """A group of figures drawn by one call: the run files it reads per run and its output file stems (``{run}`` is
    replaced by each run's name; a stem without it is one figure over all the group's runs)."""

    inputs: tuple[str, ...]
    stems: tuple[str, ...]


FIGURE_GROUPS: dict[str, FigureGroup] = {
    # paper Figures 5-7: class-by-row grids of the final samples and of their seed images
    "samples": FigureGroup(("samples.npz",), ("samples_{run}", "seeds_{run}")),
    # stage-2 training curves, read from train_log.csv (written with model.pt, its Snakemake output)
    "curves": FigureGroup(("model.pt",), ("train_curves_{run}",)),
    # paper Figure 4: robust accuracy and FID of the weight snapshots
    "snapshots": FigureGroup(("metrics/snapshots.json",), ("figure4_stage2",)),
    # paper Figure 1: counterfactual FID and target confidence against the radius
    "counterfactual": FigureGroup(("metrics/counterfactual.json",), ("figure1_counterfactual",)),
    # appendix A.3: example counterfactuals per radius
    "counterfactual_grid": FigureGroup(("counterfactual_examples.npz",), ("figureA3_counterfactuals_{run}",)),
    # paper Figure 3: reliability diagrams
    "reliability": FigureGroup(("metrics/calibration.json",), ("figure3_reliability",)),
    # paper Figure 8: unconditional samples
    "unconditional": FigureGroup(("samples_uncond.npz",), ("figure8_unconditional_{run}",)),
    # paper Figure 2: stage-2 curves of several runs overlaid (train_log.csv beside model.pt), with the robust
    # accuracy and FID of their weight snapshots when every run has metrics/snapshots.json (a run whose method saves
    # no snapshots has none: the workflow asks for it where its method does)
    "bce_curves": FigureGroup(("model.pt", "metrics/snapshots.json"), ("figure2_bce_augment",)),
}
FIGURE_EXTENSIONS = ("png", "pdf")

# table kinds that report FID or sampling steps: every run of one dataset in such a table samples from one chain source
SAMPLING_KINDS = ("main", "reproductions", "sampling", "conditional")


def marked_label(label: str, note: str) -> str:
    """``label`` with ``note`` added in its parentheses: ``RATIO (CIFAR-10)`` -> ``RATIO (CIFAR-10, noise OOD)``,
    ``RATIO`` -> ``RATIO (noise OOD)``."""
    return f"{label[:-1]}, {note})" if label.endswith(")") and "(" in label else f"{label} ({note})"


# the named out-distribution sets a paper RATIO row trains against (80M Tiny Images also as a file: or npz: set)
PAPER_RATIO_OUT_SETS = ("imagenet_minus_rimagenet", "tiny_images")


def row_label(label: str, method: dict) -> str:
    """The printed label of a table or figure row from its config label and its run's method block (train_overrides
    merged): a RATIO run (a ``ratio`` block) trained against another out-distribution set than the paper's 80M Tiny
    Images says which one, ``noise OOD`` for uniform noise (``ratio.init: noise``) or ``<set> OOD`` for a named set;
    80M Tiny Images (``tiny_images``, or a ``file:``/``npz:`` copy), the paper's own RestrictedImageNet out-distribution
    (``imagenet_minus_rimagenet``: the other ImageNet classes, paper Table 5) and every other run keep their label.
    Generated from the config, so the label can never disagree with what the run trained on."""
    ratio = method.get("ratio")
    if not ratio:
        return label
    if ratio.get("init", "noise") == "noise":
        return marked_label(label, "noise OOD")
    name = ratio.get("ood_set") or ""
    paper_set = name.startswith(("file:", "npz:")) or name in PAPER_RATIO_OUT_SETS
    return label if paper_set else marked_label(label, f"{name} OOD")


def chain_source(sampling: dict, method: dict) -> str:
    """Where a run's test-time chains start (grid search, final and unconditional samples, snapshots), the name that
    grid.json and fid.json record as ``starts``: ``sampling.init`` ``noise`` -> ``noise``; ``ood`` -> the dataset's
    ``sampling.ood_set``; ``train`` -> the ood_set of the run's bce or ratio block when that block has ``init: ood``,
    else ``noise``.

    Args:
        sampling: the run's sampling block (the global one merged with its dataset's keys).
        method: the run's method block (train_overrides merged).
    """
    init = sampling.get("init", "noise")
    if init == "ood":
        return sampling["ood_set"]
    if init == "train":
        aux = auxiliary_block(method)
        if aux.get("init") == "ood":
            return aux["ood_set"]
    return "noise"


def mixed_sources(rows: dict[str, tuple[str, str]]) -> dict[str, dict[str, str]]:
    """The datasets whose runs start their chains from different sources: dataset -> {run: source} for each dataset
    of ``rows`` (run -> (dataset, source)) with more than one source; empty when every dataset is uniform."""
    by_dataset: dict[str, dict[str, str]] = {}
    for run, (dataset, source) in rows.items():
        by_dataset.setdefault(dataset, {})[run] = source
    return {ds: runs for ds, runs in by_dataset.items() if len(set(runs.values())) > 1}


def figure_stems(group: str, runs: list[str]) -> list[str]:
    """The file stems (no folder, no extension) a figure group writes for the given run names, in order.

    Raises:
        KeyError: ``group`` is not a key of ``FIGURE_GROUPS``.
    """
    stems = FIGURE_GROUPS[group].stems
    if all("{run}" not in stem for stem in stems):
        return list(stems)
    return [stem.format(run=run) for run in runs for stem in stems]
