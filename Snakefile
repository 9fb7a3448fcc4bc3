# DAT: Joint discriminative-generative modeling via dual adversarial training, end to end.
# Snakemake decides what runs and where; the `dat` package decides how (every rule calls `python -m dat.<cmd>`).
import shlex
import sys

from snakemake.utils import min_version

min_version("9.0")

# Jobs run `python -m dat.<cmd>` from this checkout, installed or not (and inside --sdm conda environments).
sys.path.insert(0, workflow.basedir)
# (common.smk appends the config's CPU kernel pinning, cpu_kernels)
JOB_PREFIX = f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
shell.prefix(JOB_PREFIX)
# The software environment of every job (used with --software-deployment-method conda); the path is relative to
# the rule files in workflow/rules/.
ENV = "../../environment.yml"


# The paper's settings, unless --configfile names other files: those then replace config.yaml (not merge into it),
# in this process and in every job Snakemake spawns or submits (Snakemake passes them on as --configfiles).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# `snakemake --report results/report.html` bundles every table and figure marked with report() into one page.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        R.all_outputs(),


rule ablations:
    input:
        R.ablation_outputs(),
