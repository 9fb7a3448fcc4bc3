# tests/test_config.py: the workflow of this checkout (the real Snakefile), plus one step at parse time that writes
# json.dumps(R.train_cfg(run), sort_keys=True) of every run (the params of rule write_train_config, i.e. the content of
# results/{run}/train.json) to the file named by $DAT_DUMP_TRAIN_CONFIGS. Run with `snakemake --list-rules`.
import json as _json
import os as _os


include: "../../Snakefile"


with open(_os.environ["DAT_DUMP_TRAIN_CONFIGS"], "w") as _out:
    _json.dump(
        {_run: _json.dumps(R.train_cfg(_run), sort_keys=True) for _run in config["runs"]}, _out
    )
