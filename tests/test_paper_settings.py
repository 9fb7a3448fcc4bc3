"""The settings ledger (docs/paper-settings.yaml, issue 21): every resolved setting of every run of config.yaml is in
the ledger with its source, and equals the ledger's value unless the ledger is changed with it, so that a change of
config.yaml cannot drift silently from the paper or the authors' released configs. docs/paper-settings.md is made
from the ledger and must be up to date."""

from pathlib import Path

import pytest

from dat.paper_settings import LEDGER, check, entry_for, load_ledger, render, run_settings
from dat.resolve import load, read_yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return load(read_yaml(REPO / "config.yaml"))


@pytest.fixture(scope="module")
def ledger():
    return load_ledger(LEDGER)


def test_every_run_matches_the_ledger(paper, ledger):
    problems = check(paper, ledger)
    assert not problems, "config.yaml and docs/paper-settings.yaml disagree:\n" + "\n".join(problems)


def test_every_entry_cites_a_source(ledger):
    for e in ledger["entries"]:
        assert e.get("source") and "TODO" not in e["source"], e["key"]
        assert set(e) <= {"scope", "key", "value", "source", "deviation", "pending"}, e


def test_a_changed_setting_fails_naming_run_key_and_both_values(paper, ledger):
    config = read_yaml(REPO / "config.yaml")
    config["methods"]["dat_cifar100"]["bce"]["auc_threshold"] = 0.75
    problems = check(load(config), ledger)
    assert any(p.startswith("cifar100_dat: train.bce.auc_threshold: ledger 0.8") and "resolved 0.75" in p
               for p in problems), problems


def test_a_new_key_must_be_added_to_the_ledger(ledger):
    config = read_yaml(REPO / "config.yaml")
    config["datasets"]["cifar10"]["evaluate"] = {"ece": {"n_bins": 20}}
    config["methods"]["dat"]["bce"]["ood_images"] = 7
    problems = check(load(config), ledger)
    assert any(p.startswith("cifar10_dat: evaluate.ece.n_bins: ledger 15") for p in problems), problems
    ledger = {**ledger, "entries": [e for e in ledger["entries"] if e["key"] != "evaluate.ece.n_bins"]}
    problems = check(load(read_yaml(REPO / "config.yaml")), ledger)
    assert "cifar10_at: evaluate.ece.n_bins = 15 is not in the ledger (add it with its source)" in problems


def test_the_most_specific_entry_holds(paper, ledger):
    r = paper.runs
    assert entry_for(ledger, "cifar10_dat_max_t40", r["cifar10_dat_max_t40"], "train.bce.max_steps")["value"] == 40
    assert entry_for(ledger, "cifar10_dat", r["cifar10_dat"], "train.bce.max_steps")["value"] == 50
    assert run_settings(paper, "imagenet256_convnext_at")["sampling.steps_grid"] == [0]


def test_issue_21_item_6_settings(paper):
    """The settings of issue 21 item 6, each as the authors' released configs have it (sources in the ledger)."""
    assert paper.train_cfg("cifar100_dat")["train"]["bce"]["auc_threshold"] == 0.8
    assert paper.run_cfg("imagenet256_convnext_at")["sampling"]["steps_grid"] == [0]
    assert paper.run_cfg("imagenet256_convnext_dat")["sampling"]["steps_grid"] != [0]  # only the AT row
    assert paper.train_cfg("imagenet256_convnext_dat")["train"]["optimizer"]["lr"] == 0.0003
    assert paper.run_cfg("rimagenet_dat")["dataset"]["ood_eps"] == 7.0   # paper A.4 (kept; see the ledger)
    assert paper.run_cfg("cifar10_dat")["evaluate"]["counterfactual"]["n_images"] is None  # the whole training set
    for run in ("cifar10_dat", "cifar100_dat"):  # every 50,000 images, as the authors evaluate FID
        every = paper.train_cfg(run)["train"]["snapshots"]["every_steps"]
        assert abs(every * paper.train_cfg(run)["train"]["batch_size"] - 50000) < 128


def test_the_markdown_ledger_is_up_to_date(ledger):
    assert (REPO / "docs" / "paper-settings.md").read_text() == render(ledger), (
        "run: python -m dat.paper_settings --write docs/paper-settings.md")
