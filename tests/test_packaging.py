"""The repository's own wiring: packages, Dockerfile, CI entry and README agree with the tree."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_declared_package_is_a_folder_with_an_init():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    for package in cfg["packages"]:
        top = ".".join(package.split(".")[:2])
        folder = ROOT / mapping[top] / Path(*package.split(".")[2:])
        assert (folder / "__init__.py").is_file(), f"{package} -> {folder} has no __init__.py"


def test_every_subpackage_on_disk_is_declared():
    # A folder with __init__.py that pyproject does not list would vanish from a wheel install.
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    for top, folder in cfg["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((top, *rel)) in declared, f"{init.parent} is not in pyproject packages"


def test_dockerfile_copies_only_what_exists():
    for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", readme, re.M), "README lost its test command"
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call the README's test command"
