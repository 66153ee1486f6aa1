"""gq as a user gets it: the sdist and the wheel that `python -m build` makes from the files
git tracks, each installed into a fresh venv, with its dependencies, and run."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

from gq import __version__
from support import ROOT

BUILD_TIMEOUT = 300    # seconds `python -m build` may take (it fetches setuptools into its own venv)
INSTALL_TIMEOUT = 600  # seconds a pip install may take (it fetches gevent and the rest, unless cached)
HOME = "https://github.com/gq-project/gq"
DOCS = "share/doc/gq"  # below the venv's root: /opt/gq/share/doc/gq for systemd/gq.service


@dataclass
class Built:
    wheel: Path
    sdist: Path
    wheel_venv: Path  # the wheel installed
    sdist_venv: Path  # the sdist installed (pip builds its own wheel from it)


def run(*command: str | Path, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the repo's gq on the path
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


def tracked_files() -> list[str]:
    """The files of a clean clone: those git tracks, as they are in the work tree (none it
    ignores: no .venv, egg-info or build/), less the ones deleted from it."""
    listed = run("git", "-C", ROOT, "ls-files", "-z", timeout=60).stdout.split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


def install(venv: Path, what: Path) -> Path:
    run(sys.executable, "-m", "venv", venv, timeout=120)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", what, timeout=INSTALL_TIMEOUT)
    return venv


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    top = tmp_path_factory.mktemp("packaging")
    source, dist = top / "source", top / "dist"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    run(sys.executable, "-m", "build", "--outdir", dist, source, timeout=BUILD_TIMEOUT)
    [wheel], [sdist] = dist.glob("*.whl"), dist.glob("*.tar.gz")
    with ThreadPoolExecutor(2) as pool:  # two pip processes: mostly waiting on downloads and unpacking
        wheel_venv, sdist_venv = pool.map(install, [top / "wheel-venv", top / "sdist-venv"], [wheel, sdist])
    return Built(wheel, sdist, wheel_venv, sdist_venv)


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        return email.message_from_bytes(z.read(f"gq-{__version__}.dist-info/METADATA"))


def test_the_wheel_declares_the_license_classifiers_and_urls(built):
    metadata = wheel_metadata(built.wheel)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert urls == {"Homepage": HOME, "Documentation": f"{HOME}/blob/main/README.md",
                    "Issues": f"{HOME}/issues", "Source": HOME}
    classifiers = metadata.get_all("Classifier")
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert classifiers == tomllib.load(f)["project"]["classifiers"]
    assert [c for c in classifiers if c not in KNOWN_CLASSIFIERS] == []
    assert [c for c in classifiers if c.startswith("License ::")] == []  # PEP 639: the expression alone
    # The Python that runs these tests is one gq says it supports.
    assert f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}" in classifiers


def test_the_wheel_holds_every_file_of_the_package_and_the_docs(built):
    with zipfile.ZipFile(built.wheel) as z:
        names = set(z.namelist())
        data = f"gq-{__version__}.data/data/{DOCS}"
        assert z.read(f"{data}/README.md") == (ROOT / "README.md").read_bytes()
        assert z.read(f"{data}/runbook.md") == (ROOT / "docs" / "runbook.md").read_bytes()
        # docs/ beside the README, so that its links hold where it is installed.
        for page in [*(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "images").iterdir()]:
            assert z.read(f"{data}/{page.relative_to(ROOT)}") == page.read_bytes(), page
        # pytest finds gq's plugin (gq_daemon, gq_receiver) in every session of the venv
        assert "[pytest11]\ngq = gq.pytest_plugin" in z.read(f"gq-{__version__}.dist-info/entry_points.txt").decode()
        assert z.read(f"{data}/LICENSE") == z.read(f"gq-{__version__}.dist-info/licenses/LICENSE") \
            == (ROOT / "LICENSE").read_bytes()
    package = {name for name in tracked_files() if name.startswith("gq/")}
    assert package - names == set()
    assert any(name.endswith(".lua") for name in package)  # data files too, not only modules


def test_the_sdist_holds_the_license_and_the_docs(built):
    with tarfile.open(built.sdist) as t:
        names = {name.split("/", 1)[1] for name in t.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "docs/runbook.md", "pyproject.toml"} <= names
    assert {str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*") if p.is_file()} <= names


@pytest.mark.parametrize("installed", ["wheel_venv", "sdist_venv"])
def test_the_installed_gq_runs_and_its_docs_are_beside_it(built, installed, tmp_path):
    venv: Path = getattr(built, installed)
    version = subprocess.run([venv / "bin" / "gq", "--version"], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert (version.returncode, version.stdout, version.stderr) == (0, f"gq {__version__}\n", "")
    where = run(venv / "bin" / "python", "-c", "import gq; print(gq.__file__)", timeout=60, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv)  # the installed gq, not the repo's
    assert (venv / DOCS / "README.md").read_bytes() == (ROOT / "README.md").read_bytes()
    assert (venv / DOCS / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert (venv / DOCS / "runbook.md").read_bytes() == (ROOT / "docs" / "runbook.md").read_bytes()
    assert (venv / DOCS / "docs" / "operating.md").read_bytes() == (ROOT / "docs" / "operating.md").read_bytes()
