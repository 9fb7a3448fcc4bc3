# DAT: Joint discriminative-generative modeling via dual adversarial training, end to end.
# Snakemake decides what runs and where; the `dat` package decides how (every rule calls `python -m dat.<cmd>`).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
