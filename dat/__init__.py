"""dat: Dual Adversarial Training (joint discriminative-generative energy-based models), the package behind the
Snakemake pipeline. Library modules (models, attacks, sampling, losses, curriculum, metrics, data) are pure
functions of tensors and arrays; the command modules (prepare, fid_ref, train, grid_search, sample, eval_*,
report) own loops, files and CLIs and each runs as ``python -m dat.<command> --help``."""

__version__ = "0.1.0"
