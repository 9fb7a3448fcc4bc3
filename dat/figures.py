"""The paper's figures from run folders, each saved as PNG and PDF: sample grids (Figures 5-8), counterfactual curves
and grids (Figure 1, appendix A.3), reliability diagrams (Figure 3), snapshot curves (Figures 2 and 4) and stage-2
training curves.

The ``plot_*`` functions draw into given matplotlib Axes and read nothing; :func:`write_figures` reads the run files
of each figure group (``dat.report_spec.FIGURE_GROUPS``: the run files each group reads and the file names it writes)
and skips, logging, the inputs that are absent. Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot,
no display needed).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dat.report_spec import FIGURE_GROUPS
from dat.tables import collect_json, is_missing, run_name

log = logging.getLogger("dat.figures")

DPI = 120



def select_grid(y: np.ndarray, max_classes: int = 10, per_class: int = 10) -> tuple[list[int], list[list[int]]]:
    """Indices for a class-by-row sample grid: the first ``per_class`` samples of each of the first classes.

    With ``y = arange(N) % K`` and K = 10 this is exactly the first 100 samples, one row per class.

    Args:
        y: (N,) int64 target classes.
        max_classes: at most this many rows (the smallest class indices).
        per_class: at most this many samples per row.

    Returns:
        ``(classes, rows)``: the class of each row and the sample indices in each row.
    """
    y = np.asarray(y)
    classes = [int(c) for c in np.unique(y)[:max_classes]]
    return classes, [np.flatnonzero(y == c)[:per_class].tolist() for c in classes]


def image_mosaic(x: np.ndarray, rows: Sequence[Sequence[int]], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile images into one array.

    Args:
        x: (N, H, W, C) uint8 images.
        rows: sample indices per mosaic row.
        pad: pixels of ``fill`` between and around tiles.
        fill: padding value.

    Returns:
        (R*(H+pad)+pad, cols*(W+pad)+pad, C) uint8.
    """
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, C) with C in (1, 3), got {x.shape}")
    _, h, w, c = x.shape
    n_cols = max((len(r) for r in rows), default=0)
    out = np.full((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, k in enumerate(row):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            out[top:top + h, left:left + w] = x[k]
    return out


def plot_image_grid(ax, x: np.ndarray, y: np.ndarray, *, title: str | None = None, max_classes: int = 10,
                    per_class: int = 10, pad: int = 2) -> None:
    """Draw one row per class (up to ``per_class`` images each) into ``ax``; grayscale when C = 1.

    Args:
        ax: a matplotlib Axes.
        x: (N, H, W, C) uint8 images (samples or their seeds).
        y: (N,) int64 classes that order the rows.
        title: optional Axes title.
        max_classes: at most this many rows.
        per_class: at most this many columns.
        pad: pixels between tiles.
    """
    classes, rows = select_grid(y, max_classes, per_class)
    _show_mosaic(ax, image_mosaic(x, rows, pad=pad), title)
    h = x.shape[1]
    ax.set_xticks([])
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(len(classes))], [str(c) for c in classes])
    ax.tick_params(length=0, labelsize=7)
    ax.set_ylabel("class")


def _show_mosaic(ax, mosaic: np.ndarray, title: str | None) -> None:
    """Show a (H, W, C) uint8 mosaic (grayscale when C = 1) without a frame, with an optional title."""
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)


def plot_counterfactual_grid(ax, x: np.ndarray, x_cf: np.ndarray, y: np.ndarray, target: np.ndarray,
                             radii: Sequence[float], *, title: str | None = None, pad: int = 2) -> None:
    """Appendix A.3: one row per image, the original then its counterfactual at each radius.

    Args:
        ax: a matplotlib Axes.
        x: (n, H, W, C) uint8 originals; x_cf: (R, n, H, W, C) uint8 counterfactuals at the R radii.
        y, target: (n,) int64 true and target classes (row labels "y -> target").
        radii: the R L2 radii (column labels).
    """
    n = len(x)
    tiles = np.concatenate([x, *x_cf])  # tile k * n + i: image i at column k (0 = original)
    rows = [[k * n + i for k in range(len(radii) + 1)] for i in range(n)]
    _show_mosaic(ax, image_mosaic(tiles, rows, pad=pad), title)
    h, w = x.shape[1:3]
    ax.set_xticks([pad + k * (w + pad) + w / 2 for k in range(len(radii) + 1)],
                  ["original"] + [f"$\\varepsilon$={r:g}" for r in radii], fontsize=7)
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(n)], [f"{a} $\\to$ {b}" for a, b in zip(y, target)],
                  fontsize=7)
    ax.tick_params(length=0)


def plot_snapshots(ax_acc, ax_fid, curves: Sequence[dict]) -> None:
    """Paper Figure 4: PGD robust accuracy and FID of the weight snapshots against the training images seen.

    Args:
        ax_acc, ax_fid: two Axes.
        curves: ``metrics/snapshots.json`` dicts with a ``label`` added, one line per run.
    """
    one_t = len({c["steps"] for c in curves}) == 1  # runs whose grid searches chose another T say theirs
    for c in curves:
        images = [pt["images"] for pt in c["points"]]
        ax_acc.plot(images, [pt["acc_pgd"] * 100 for pt in c["points"]], marker="o", ms=3, label=c["label"])
        ax_fid.plot(images, [pt["fid"] for pt in c["points"]], marker="o", ms=3,
                    label=c["label"] if one_t else f"{c['label']} (T = {c['steps']})")
    c = curves[0]
    ax_acc.set(xlabel="training images seen (this stage)", ylabel="PGD robust accuracy (%)",
               title=f"{c['norm']} PGD-{c['pgd_steps']}, eps {c['eps']:g}, {c['n_pgd']} test images")
    ax_fid.set(xlabel="training images seen (this stage)", ylabel="FID",
               title=f"FID of {c['n_samples']} samples at " + (f"T = {c['steps']}" if one_t else "each run's grid T"))
    for ax in (ax_acc, ax_fid):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def plot_counterfactual(ax_fid, ax_conf, curves: Sequence[dict]) -> None:
    """Paper Figure 1: class-averaged counterfactual FID and mean target confidence against the radius.

    Args:
        ax_fid: Axes for FID vs radius.
        ax_conf: Axes for confidence vs radius.
        curves: dicts with ``label``, ``radii``, ``fid`` and ``confidence`` (lists of equal length), one per run.
    """
    for c in curves:
        ax_fid.plot(c["radii"], c["fid"], marker="o", ms=3, label=c["label"])
        ax_conf.plot(c["radii"], c["confidence"], marker="o", ms=3, label=c["label"])
    ax_fid.set(xlabel=r"$\ell_2$ radius $\varepsilon$", ylabel="class-averaged FID", title="Counterfactual FID")
    ax_conf.set(xlabel=r"$\ell_2$ radius $\varepsilon$", ylabel="mean target confidence", ylim=(0, 1.02),
                title="Target-class confidence")
    for ax in (ax_fid, ax_conf):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def plot_reliability(ax, bins: dict, ece: float, title: str) -> None:
    """A reliability diagram (paper Figure 3): accuracy per confidence bin as bars, the gap to confidence hatched.

    Args:
        ax: a matplotlib Axes.
        bins: ``confidence``, ``accuracy``, ``count``, ``lower``, ``upper`` lists (calibration.json ``bins``).
        ece: expected calibration error in [0, 1], shown in the title as a percentage.
        title: the run's label.
    """
    count = np.asarray(bins["count"], dtype=float)
    n = len(count)
    lower = np.asarray(bins.get("lower") or np.linspace(0, 1, n + 1)[:-1], dtype=float)
    upper = np.asarray(bins.get("upper") or np.linspace(0, 1, n + 1)[1:], dtype=float)
    acc = np.array([np.nan if is_missing(v) else v for v in bins["accuracy"]], dtype=float)
    conf = np.array([np.nan if is_missing(v) else v for v in bins["confidence"]], dtype=float)
    keep = (count > 0) & np.isfinite(acc)
    width = (upper - lower)[keep]
    ax.bar(lower[keep], acc[keep], width=width, align="edge", color="tab:blue", edgecolor="black", lw=0.5,
           label="accuracy")
    gap = keep & np.isfinite(conf)
    ax.bar(lower[gap], (conf - acc)[gap], bottom=acc[gap], width=(upper - lower)[gap], align="edge", color="tab:red",
           alpha=0.3, edgecolor="tab:red", hatch="//", lw=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{title}: ECE {ece * 100:.2f}%")
    ax.legend(fontsize=7, loc="upper left")


def plot_train_curves(axes: Sequence, train_log: pd.DataFrame, label: str | None = None) -> None:
    """Stage-2 curves against images seen: loss terms, AUC, T (``steps_T``) and adversarial accuracy.

    Args:
        axes: four Axes (loss, AUC, T, adversarial accuracy); None skips that panel.
        train_log: train_log.csv rows; only rows with a ``bce`` value (stage 2) are drawn.
        label: None draws one run (every loss term); a label overlays runs: the BCE loss of each, in one colour
            per run across the four panels, with a legend.
    """
    df = train_log[pd.to_numeric(train_log["bce"], errors="coerce").notna()]
    x = pd.to_numeric(df["images"], errors="coerce")
    col = lambda name: pd.to_numeric(df[name], errors="coerce")  # noqa: E731
    ax_loss, ax_auc, ax_t, ax_acc = axes
    drawn = [ax for ax in axes if ax is not None]
    color = None if label is None else f"C{len(drawn[0].get_lines()) % 10}"
    if ax_loss is not None:
        for name in (("loss", "ce_adv", "bce") if label is None else ("bce",)):
            if name in df:
                ax_loss.plot(x, col(name), label=name if label is None else label, color=color)
        ax_loss.set(ylabel="loss", title="loss terms" if label is None else "BCE loss")
        ax_loss.legend(fontsize=8)
    for ax, name, default, ylabel, title in ((ax_auc, "auc", "tab:green", "AUC real vs $x_T$", "AUC"),
                                             (ax_t, "steps_T", "tab:purple", "T", "sampling steps T (curriculum)"),
                                             (ax_acc, "acc_adv", "tab:orange", "accuracy",
                                              "adversarial training accuracy")):
        if ax is None:
            continue
        if name == "steps_T" and name in df:
            ax.step(x, col(name), where="post", color=color or default, label=label)
        elif name in df:
            ax.plot(x, col(name), color=color or default, label=label)
        ax.set(ylabel=ylabel, title=title)
    for ax in drawn:
        ax.set_xlabel("images seen")
        ax.grid(alpha=0.3)


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> list[Path]:
    """Save ``fig`` as ``path`` (PNG) and beside it as PDF, each atomically (temporary file, then ``os.replace``).

    Returns:
        [the PNG path, the PDF path].
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for target, fmt in ((path, "png"), (path.with_suffix(".pdf"), "pdf")):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".{fmt}", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the figure ordinary permissions
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        log.info("wrote %s", target)
        written.append(target)
    return written

def _grid_figure(x: np.ndarray, y: np.ndarray, title: str, path: Path, dpi: int) -> list[Path]:
    _, rows = select_grid(y)
    fig = Figure(figsize=(max(len(r) for r in rows) * 0.5 + 0.8, len(rows) * 0.5 + 0.6))
    plot_image_grid(fig.add_subplot(), x, y, title=title)
    return save_figure(fig, path, dpi)


def _stage2_log(run_dir: Path) -> pd.DataFrame | None:
    """train_log.csv of a run when it has stage-2 rows (a ``bce`` value), else None (logged)."""
    path = run_dir / "train_log.csv"
    if not path.is_file():
        log.warning("no stage-2 curves for %s: %s absent", run_name(run_dir), path)
        return None
    train_log = pd.read_csv(path)
    if "bce" not in train_log or pd.to_numeric(train_log["bce"], errors="coerce").notna().sum() == 0:
        log.info("no stage-2 curves for %s: no stage-2 rows (empty bce column) in %s", run_name(run_dir), path)
        return None
    return train_log


def _png(out_dir: Path, group: str, run: str | None = None, which: int = 0) -> Path:
    """The PNG path of a group's ``which``-th file stem (``dat.report_spec.FIGURE_GROUPS``) for a run."""
    return out_dir / f"{FIGURE_GROUPS[group].stems[which].format(run=run)}.png"


def _npz_grids(group: str, runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int,
               panels: Sequence[tuple[str, str]]) -> list[Path]:
    """One class-by-row grid per run and panel ``(array key of the group's npz, title)``, the panel's file stem the
    group's stem of the same index."""
    written = []
    for run_dir, label in runs:
        run, path = run_name(run_dir), run_dir / FIGURE_GROUPS[group].inputs[0]
        if not path.is_file():
            log.warning("skipped the %s figures of %s: %s absent", group, run, path)
            continue
        with np.load(path) as f:
            arrays = {k: f[k] for k in ("x", "y", "x_init") if k in f.files}
        for which, (key, what) in enumerate(panels):
            png = _png(out_dir, group, run, which)
            if key in arrays:
                written += _grid_figure(arrays[key], arrays["y"], f"{label}: {what}", png, dpi)
            else:
                log.warning("skipped %s: %s has no %r", png.name, path, key)
    return written


def _found(group: str, runs: Sequence[tuple[Path, str]], figure: str) -> list[dict]:
    """The group's JSON input of each run that has it, with the run's ``label`` added; [] (logged) when none has."""
    relpath = FIGURE_GROUPS[group].inputs[0]
    found = collect_json([d for d, _ in runs], [label for _, label in runs], relpath)
    if not found:
        log.warning("skipped %s: no run has %s", figure, relpath)
    return [{"label": label, **data} for _, label, data in found]


def draw_samples(runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int = DPI) -> list[Path]:
    """Paper Figures 5-7: each run's final samples and their seed images, one row per class."""
    return _npz_grids("samples", runs, out_dir, dpi, (("x", "samples"), ("x_init", "seeds")))


def draw_unconditional(runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int = DPI) -> list[Path]:
    """Paper Figure 8: each run's unconditional samples, one row per class of the conditional samples they share
    starts with."""
    return _npz_grids("unconditional", runs, out_dir, dpi, (("x", "unconditional samples"),))


def _two_panels(group: str, plot, runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int, figure: str) -> list[Path]:
    """``plot(ax_left, ax_right, curves)`` of the runs that have the group's JSON input (nothing, logged, when none
    has), saved under the group's file stem."""
    curves = _found(group, runs, figure)
    if not curves:
        return []
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    plot(*fig.subplots(1, 2), curves)
    return save_figure(fig, _png(out_dir, group), dpi)


def draw_counterfactual(runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int = DPI) -> list[Path]:
    """Paper Figure 1: counterfactual FID and target confidence against the radius, one line per run."""
    return _two_panels("counterfactual", plot_counterfactual, runs, out_dir, dpi, "Figure 1")


def draw_snapshots(runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int = DPI) -> list[Path]:
    """Paper Figure 4: robust accuracy and FID of the weight snapshots, one line per run."""
    return _two_panels("snapshots", plot_snapshots, runs, out_dir, dpi, "Figure 4")


def draw_reliability(runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int = DPI) -> list[Path]:
    """Paper Figure 3 / A.5: one reliability diagram per run."""
    found = _found("reliability", runs, "Figure 3")
    if not found:
        return []
    fig = Figure(figsize=(3.6 * len(found), 3.6), layout="constrained")
    for ax, c in zip(np.atleast_1d(fig.subplots(1, len(found))), found):
        plot_reliability(ax, c["bins"], c["ece"], c["label"])
    return save_figure(fig, _png(out_dir, "reliability"), dpi)


def draw_counterfactual_grid(runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int = DPI) -> list[Path]:
    """Appendix A.3: each run's example counterfactuals per radius."""
    written = []
    for run_dir, label in runs:
        path = run_dir / FIGURE_GROUPS["counterfactual_grid"].inputs[0]
        if not path.is_file():
            log.warning("skipped the counterfactual grid of %s: %s absent", run_name(run_dir), path)
            continue
        with np.load(path) as f:
            ex = {k: f[k] for k in f.files}
        fig = Figure(figsize=(0.6 * (len(ex["radii"]) + 1) + 1.2, 0.6 * len(ex["x"]) + 0.6))
        plot_counterfactual_grid(fig.add_subplot(), ex["x"], ex["x_cf"], ex["y"], ex["target"], ex["radii"],
                                 title=f"{label}: counterfactuals (true -> target class)")
        written += save_figure(fig, _png(out_dir, "counterfactual_grid", run_name(run_dir)), dpi)
    return written


def draw_curves(runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int = DPI) -> list[Path]:
    """Each stage-2 run's training curves (runs without stage-2 rows in train_log.csv are logged and skipped)."""
    written = []
    for run_dir, label in runs:
        train_log = _stage2_log(run_dir)
        if train_log is not None:
            fig = Figure(figsize=(9, 6), layout="constrained")
            plot_train_curves(fig.subplots(2, 2).ravel(), train_log)
            fig.suptitle(f"{label}: stage-2 training")
            written += save_figure(fig, _png(out_dir, "curves", run_name(run_dir)), dpi)
    return written


def draw_bce_curves(runs: Sequence[tuple[Path, str]], out_dir: Path, dpi: int = DPI) -> list[Path]:
    """Paper Figure 2: the stage-2 runs overlaid (snapshot robust accuracy and FID when every one has
    metrics/snapshots.json, BCE loss and curriculum T), for runs that differ in the BCE-branch augmentation."""
    staged = [(run_dir, label, t) for (run_dir, label) in runs if (t := _stage2_log(run_dir)) is not None]
    if not staged:
        log.warning("skipped Figure 2: no run has stage-2 rows in train_log.csv")
        return []
    found = collect_json([d for d, _, _ in staged], [label for _, label, _ in staged], "metrics/snapshots.json")
    fig = Figure(figsize=(9, 6.5 if len(found) == len(staged) else 6), layout="constrained")
    if len(found) == len(staged):
        (ax_acc, ax_fid), (ax_bce, ax_t) = fig.subplots(2, 2)
        plot_snapshots(ax_acc, ax_fid, [{"label": label, **c} for _, label, c in found])
        axes = (ax_bce, None, ax_t, None)
        fig.suptitle("Stage 2 per BCE-branch augmentation (paper Figure 2)")
    else:
        log.warning("Figure 2 without robust accuracy and FID: %d of %d stage-2 runs have metrics/snapshots.json "
                    "(a method without a snapshots block); drawing the training logs only", len(found), len(staged))
        axes = fig.subplots(2, 2).ravel()
        fig.suptitle("Stage-2 training per run (paper Figure 2: BCE-branch augmentation)")
    for _, label, train_log in staged:
        plot_train_curves(axes, train_log, label=label)
    return save_figure(fig, _png(out_dir, "bce_curves"), dpi)


# figure group (a key of dat.report_spec.FIGURE_GROUPS) -> its drawing function
DRAW = {
    "samples": draw_samples,
    "curves": draw_curves,
    "snapshots": draw_snapshots,
    "counterfactual": draw_counterfactual,
    "counterfactual_grid": draw_counterfactual_grid,
    "reliability": draw_reliability,
    "unconditional": draw_unconditional,
    "bce_curves": draw_bce_curves,
}
FIGURES = tuple(FIGURE_GROUPS)


def write_figure_groups(groups: dict[str, Sequence[tuple[str | os.PathLike, str]]], out_dir: str | os.PathLike,
                        dpi: int = DPI) -> list[Path]:
    """Draw each figure group for its own ``(run_dir, label)`` rows into ``out_dir``, as PNG and PDF (file names:
    ``dat.report_spec.figure_stems``); inputs that are absent are skipped (logged). Returns the paths written.

    Raises:
        ValueError: a group that is not a key of ``dat.report_spec.FIGURE_GROUPS`` (naming it).
    """
    unknown = sorted(set(groups) - set(FIGURE_GROUPS))
    if unknown:
        raise ValueError(f"unknown figure group(s) {unknown}: {FIGURES}")
    written = []
    for group, rows in groups.items():
        written += DRAW[group]([(Path(run_dir), label) for run_dir, label in rows], Path(out_dir), dpi)
    return written

