"""profiles/slurm on a real single-node SLURM cluster (tests/slurm/cluster.sh brings it up): the micro pipeline runs
to its tables through the profile as it is, each rule gets the sbatch resources the profile gives it, and a training
job that SLURM requeues, preempts, cancels or times out resumes from its last.pt and the pipeline completes.

Slow (each test submits real jobs). Without Slurm, root (or password-less sudo) or a working cluster the tests skip
and say why, except under CI=true, where they fail.
"""

import csv
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests/slurm/cluster.sh"
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
GPU_RULES = {"fid_ref", "fid_floor", "train_model", "grid_search_steps", "sample_images", "compute_fid", "eval_robust"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed (run ./setup.sh)"),
]


def _unavailable(why: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"SLURM tests cannot run under CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def slurm_env():
    """The environment of a client of the test cluster (SLURM_CONF, PATH); stops the cluster afterwards if it started
    it here."""
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        _unavailable("Slurm is not installed (tests/slurm/cluster.sh install)")
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        _unavailable("slurmd needs root or password-less sudo")
    pytest.importorskip("snakemake_executor_plugin_slurm")
    was_up = subprocess.run([CLUSTER, "status"], capture_output=True).returncode == 0
    up = subprocess.run([CLUSTER, "up"], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        _unavailable(f"tests/slurm/cluster.sh up failed:\n{up.stdout[-2000:]}\n{up.stderr[-3000:]}")
    exports = dict(re.findall(r"(\w+)=(\S+)", up.stdout.strip().splitlines()[-1]))
    env = {**os.environ, "SLURM_CONF": exports["SLURM_CONF"],
           "PATH": exports["PATH"].replace("$PATH", os.environ["PATH"])}
    yield env
    if not was_up:
        subprocess.run([CLUSTER, "down"], capture_output=True, timeout=120)


def snakemake_cmd(workdir: Path, config: Path, *targets: str) -> list[str]:
    """The user's command, `snakemake --profile profiles/slurm <target>`, in a scratch working directory; the only
    options added poll job states every 5 s instead of 40 (a faster test) and keep every SLURM log."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--profile",
            str(REPO / "profiles/slurm"), "--configfile", str(config), "--directory", str(workdir),
            "--slurm-init-seconds-before-status-checks", "5", "--slurm-keep-successful-logs", *targets]


def slurm_jobs(env: dict, workdir: Path) -> list[dict]:
    """Every job the cluster still knows (MinJobAge 18 h) that ran in ``workdir``, as `scontrol show job` fields, by
    job id."""
    ids = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i"], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    jobs = []
    for job_id in sorted(ids, key=int):
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True).stdout
        fields = dict(token.split("=", 1) for token in out.split() if "=" in token)
        if fields.get("WorkDir") == str(workdir):
            jobs.append(fields)
    return jobs


def rule_of(job: dict) -> str:
    """The rule name the executor plugin puts in the job comment (rule_<rule>_wildcards_<values>)."""
    return re.match(r"rule_(\w+?)_wildcards_", job["Comment"]).group(1)


def cancel_jobs(env: dict, workdir: Path) -> None:
    for job in slurm_jobs(env, workdir):
        if job["JobState"] in ("PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "CONFIGURING", "COMPLETING"):
            subprocess.run(["scancel", job["JobId"]], env=env, capture_output=True)


def test_micro_pipeline_runs_through_the_slurm_profile(slurm_env, tmp_path):
    """results/tables/table1.tex of the micro config through profiles/slurm: every non-local rule is a SLURM job with
    the profile's partition, CPUs, GPU, memory and time, and the table holds numbers."""
    log = tmp_path / "snakemake.log"
    start = time.time()
    try:
        with open(log, "w") as fh:
            proc = subprocess.run(snakemake_cmd(tmp_path, REPO / "tests/config/micro.yaml", "results/tables/table1.tex"),
                                  env=slurm_env, stdout=fh, stderr=subprocess.STDOUT, timeout=1800)
    finally:
        cancel_jobs(slurm_env, tmp_path)
    print(f"micro table1 through SLURM: {time.time() - start:.0f} s")
    assert proc.returncode == 0, log.read_text()[-6000:]
    with open(tmp_path / "results/tables/table1.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["Standard AT", "DAT"]
    for row in rows:
        numbers = [float(v) for k, v in row.items() if k != "method" and re.fullmatch(r"-?\d+(\.\d+)?", v or "")]
        assert len(numbers) >= 4 and all(math.isfinite(x) for x in numbers), row
    assert "\\toprule" in (tmp_path / "results/tables/table1.tex").read_text()

    jobs = slurm_jobs(slurm_env, tmp_path)
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(rule_of(job), []).append(job)
    assert set(by_rule) == GPU_RULES | {"prepare_data"}, sorted(by_rule)
    assert len(by_rule["train_model"]) == 2 and len(by_rule["eval_robust"]) == 2
    for rule, rule_jobs in by_rule.items():
        for job in rule_jobs:
            assert job["JobState"] == "COMPLETED" and job["Requeue"] == "1", job
            if rule in GPU_RULES:  # one GPU with its 8 CPUs (cpus_per_gpu, not a default cpus_per_task)
                assert job["Partition"] == "gpu" and job["TresPerJob"] == "gres:gpu:1", job
                assert job["CpusPerTres"] == "gres:gpu:8" and job["NumCPUs"] == "8", job
            else:
                assert job["Partition"] == "cpu" and job["NumCPUs"] == "1" and "TresPerJob" not in job, job
    train = by_rule["train_model"][0]
    assert train["MinMemoryNode"] == "62.50G" and train["TimeLimit"] == "1-00:00:00", train  # mem_mb 64000, 24 h
    # torch in each GPU job gets the rule's 8 threads (GPU_THREADS in common.smk), capped by the job's Snakemake at the cores
    # the node really has (this machine's), as printed in the job's SLURM log
    threads = min(8, len(os.sched_getaffinity(0)))
    for rule in ("train_model", "sample_images", "eval_robust"):
        job_logs = list((tmp_path / ".snakemake/slurm_logs" / f"rule_{rule}").glob("*/*.log"))
        assert job_logs and all(f"--threads {threads} " in p.read_text() for p in job_logs), rule


# ---------------------------------------------------------------------------------------------------------------
# Preemption: one stage-1 run per way SLURM stops a job, in one working directory (the data are prepared once).

KINDS = ("requeue", "preempt", "cancel", "timeout")
PERIODIC = ("preempt", "timeout")  # the kinds that resume from a periodic checkpoint rather than one saved on SIGTERM


@pytest.fixture(scope="module")
def interrupt_dir(tmp_path_factory):
    """A working directory and a config of four micro stage-1 runs. The requeued and cancelled runs write last.pt only
    on a signal (ckpt_every_steps beyond the run), so a resume at step > 0 shows that SIGTERM saved it. The preempted
    run is killed without a signal (the partition's GraceTime is 0, as by default), and the timed-out one was seen
    killed before its SIGTERM handler saved (the job step ends within a second of the time limit): both resume from
    their periodic checkpoint (every step here, every ckpt_every_steps / ckpt_every_minutes in a real run)."""
    workdir = tmp_path_factory.mktemp("slurm_interrupt")
    config = yaml.safe_load((REPO / "tests/config/micro.yaml").read_text())
    at = config["methods"]["at"]
    at.update(steps=16, log_every=1, ckpt_every_steps=1000)
    config["methods"] = {"at": at, "at_ckpt_every_step": {**at, "ckpt_every_steps": 1}}
    config["runs"] = {f"fmnist_{kind}": {"dataset": "fmnist", "model": "small", "seed": 0,
                                         "method": "at_ckpt_every_step" if kind in PERIODIC else "at"}
                      for kind in KINDS}
    # the schema requires a table1; nothing here builds it
    config["tables"] = {"table1": {"dataset": "fmnist", "rows": {f"AT ({kind})": f"fmnist_{kind}" for kind in KINDS}}}
    path = workdir / "interrupt.yaml"
    path.write_text(yaml.safe_dump(config))
    return workdir, path


def _training_process(workdir: Path, run: str) -> int | None:
    """The pid of the `python -m dat.train` process training ``run`` in ``workdir`` (same machine as the node)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"dat.train" in cmdline and f"results/{run}/ckpt".encode() in cmdline and cwd == str(workdir):
            return int(proc.name)
    return None


def _freeze_training(env: dict, workdir: Path, run: str, proc: subprocess.Popen, log: Path, min_steps: int = 1) -> str:
    """Wait until ``run`` has logged ``min_steps`` training steps, then stop its process (SIGSTOP) so that whatever
    SLURM does next finds it mid-run however fast this machine is (SLURM sends SIGCONT before SIGTERM); return the
    job id."""
    csv_log = workdir / f"results/{run}/train_log.csv"
    deadline = time.time() + 900
    while time.time() < deadline:
        assert proc.poll() is None, f"snakemake ended before training started:\n{log.read_text()[-6000:]}"
        if csv_log.exists() and len(csv_log.read_text().splitlines()) >= 1 + min_steps:
            pid = _training_process(workdir, run)
            if pid is not None:
                os.kill(pid, signal.SIGSTOP)
                steps = len(csv_log.read_text().splitlines()) - 1
                assert steps < 16, f"{run} finished training before it could be stopped"
                running = [j for j in slurm_jobs(env, workdir)
                           if j["Comment"] == f"rule_train_model_wildcards_{run}" and j["JobState"] == "RUNNING"]
                assert len(running) == 1, running
                return running[0]["JobId"]
        time.sleep(0.2)
    raise AssertionError(f"{run} did not start training in 15 min:\n{log.read_text()[-6000:]}")


@pytest.mark.parametrize("kind", KINDS)
def test_interrupted_training_job_resumes_from_its_checkpoint(slurm_env, interrupt_dir, kind):
    """SLURM stops the training job: requeue, cancel and timeout send SIGCONT + SIGTERM (SIGKILL after KillWait), on
    which dat.train writes last.pt and exits 75; preemption (GraceTime 0) kills it at once. A requeued or preempted job
    restarts in the same attempt (slurm-requeue), a cancelled or timed-out one is resubmitted by `retries`; either way
    the run resumes from its last checkpoint (requeue, cancel: the step it reached; preempt, timeout: the last
    periodic checkpoint) and the pipeline completes."""
    workdir, config = interrupt_dir
    run = f"fmnist_{kind}"
    env = slurm_env
    log = workdir / f"snakemake_{kind}.log"
    start = time.time()
    fh = open(log, "w")
    proc = subprocess.Popen(snakemake_cmd(workdir, config, f"results/{run}/model.pt"), env=env, stdout=fh,
                            stderr=subprocess.STDOUT)
    try:
        # periodic checkpoints: step 1's is on disk once step 2 is logged
        job_id = _freeze_training(env, workdir, run, proc, log, min_steps=2 if kind in PERIODIC else 1)
        if kind == "requeue":
            subprocess.run(["scontrol", "requeue", job_id], env=env, check=True)
        elif kind == "preempt":  # the whole node for a job of the higher-priority partition
            subprocess.run(["sbatch", "--parsable", "-p", "urgent", "--exclusive", "-t", "1", "-o", "/dev/null",
                            "-D", str(workdir), "--comment", "urgent", "--wrap", "sleep 1"], env=env, check=True)
        elif kind == "cancel":
            subprocess.run(["scancel", job_id], env=env, check=True)
        else:  # a limit of 1 minute: SLURM times the job out at its next check (<= 30 s later)
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "TimeLimit=1"], env=env, check=True)
        rc = proc.wait(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=120)
        fh.close()
        cancel_jobs(env, workdir)
    print(f"{kind}: {time.time() - start:.0f} s")
    assert rc == 0, log.read_text()[-6000:]
    assert (workdir / f"results/{run}/model.pt").exists()
    train_log = (workdir / f"logs/train_model/{run}.log").read_text()
    resumed = re.search(r"resumed from \S*results/" + run + r"/ckpt/last\.pt at step (\d+)", train_log)
    assert resumed and int(resumed.group(1)) > 0, train_log[-3000:]
    assert f"wrote results/{run}/model.pt after 16 steps" in train_log
    # each logged step once: the rows written after the checkpoint were dropped on resume
    with open(workdir / f"results/{run}/train_log.csv") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == list(range(1, 17))

    jobs = [j for j in slurm_jobs(env, workdir) if j["Comment"] == f"rule_train_model_wildcards_{run}"]
    states = [j["JobState"] for j in jobs]
    if kind in ("requeue", "preempt"):  # one job, restarted once by SLURM itself
        assert states == ["COMPLETED"] and jobs[0]["Restarts"] == "1", jobs
    else:  # the stopped job failed; Snakemake's retry is a new job with the doubled runtime of attempt 2
        assert states == [{"cancel": "CANCELLED", "timeout": "TIMEOUT"}[kind], "COMPLETED"], jobs
        assert [j["TimeLimit"] for j in jobs] == [("00:01:00" if kind == "timeout" else "1-00:00:00"), "2-00:00:00"]
    if kind == "preempt":
        urgent = [j for j in slurm_jobs(env, workdir) if j["Comment"] == "urgent"]
        assert [j["JobState"] for j in urgent] == ["COMPLETED"], urgent
