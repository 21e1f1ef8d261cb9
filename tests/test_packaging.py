"""The wheels: built from the source tree, installed into a fresh venv, the documented
commands of docs/operations.md work, under the distribution names that are promod's.

The build runs without network access (``--no-build-isolation`` with this venv's
setuptools); the fresh venv gets the wheel and, copied from this environment, the
distributions it depends on, so nothing from the source tree is importable there.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

# One worker builds the wheels (a module-scoped fixture) for both tests under xdist.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheels")]

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "operations.md"
DIST = "promod-daemon"
PLUGIN_DIST = "promod-daemon-partner-voucher"
# .hypothesis: the example database, which tests running in parallel write to.
_SKIP = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, f"{cmd} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _wheel(source: Path, out: Path, known: set[Path]) -> Path:
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        out,
        source,
        cwd=source,
    )
    [wheel] = [w for w in out.glob("*.whl") if w not in known]
    known.add(wheel)
    return wheel


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(name).decode())


def _requirements(dist: str) -> set[str]:
    """The distributions ``dist`` needs at run time, transitively, from this environment."""
    env = {k: str(v) for k, v in default_environment().items()}
    env["extra"] = ""
    found: set[str] = set()
    todo = [dist]
    while todo:
        for spec in importlib.metadata.requires(todo.pop()) or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            name = req.name.lower().replace("_", "-")
            if name not in found:
                found.add(name)
                todo.append(name)
    return found


def _copy_distribution(name: str, site: Path) -> None:
    dist = importlib.metadata.distribution(name)
    root = Path(str(dist.locate_file("")))
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file)))
        if not source.is_file() or root not in source.resolve().parents:
            continue  # console scripts and the like live outside site-packages
        target = site / source.resolve().relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Both wheels, built from a copy of the source tree (the tree itself stays clean)."""
    root = tmp_path_factory.mktemp("build")
    tree = root / "promod"
    shutil.copytree(REPO, tree, ignore=_SKIP)
    out = root / "dist"
    out.mkdir()
    known: set[Path] = set()
    yield {
        "promod": _wheel(tree, out, known),
        "plugin": _wheel(tree / "plugins" / "promod-partner-voucher", out, known),
    }


def test_wheels_carry_promods_own_distribution_names(wheels: dict[str, Path]) -> None:
    core, plugin = _metadata(wheels["promod"]), _metadata(wheels["plugin"])
    assert core["Name"] == DIST
    assert wheels["promod"].name.startswith("promod_daemon-")
    assert plugin["Name"] == PLUGIN_DIST
    assert any(r.startswith("promod-daemon") for r in plugin.get_all("Requires-Dist") or [])
    with zipfile.ZipFile(wheels["promod"]) as zf:
        names = zf.namelist()
    # The package data the daemon needs at run time is in the wheel.
    assert "promod/store/migrations/0001_core.sql" in names
    assert "promod/data/promod.toml.in" in names
    text = DOC.read_text()
    assert "pip install promod\n" not in text and "promod-partner-vouchers" not in text


def test_the_documented_commands_work_from_the_wheel_in_a_fresh_venv(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path
        ).strip()
    )
    for name in sorted(_requirements(DIST)):
        _copy_distribution(name, site)
    for wheel in (wheels["promod"], wheels["plugin"]):
        _run(
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            wheel,
            cwd=tmp_path,
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PROMOD", "VIRTUAL"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    bin_ = venv / "bin"

    # The commands of "Trying it without root", in order.
    doc = DOC.read_text()
    for step in ("bin/promod --help", "bin/promod init ", "bin/promod check-config --config"):
        assert step in doc, step
    assert "--help" in _run(bin_ / "promod", "--help", cwd=tmp_path, env=env)
    _run(bin_ / "promod", "init", tmp_path / "try", cwd=tmp_path, env=env)
    checked = _run(
        bin_ / "promod",
        "check-config",
        "--config",
        tmp_path / "try" / "promod.toml",
        cwd=tmp_path,
        env=env,
    )
    assert checked.strip().endswith(": ok"), checked
    assert "status" in _run(bin_ / "promodctl", "--help", cwd=tmp_path, env=env)

    # What runs is the wheel's promod, and it knows its distribution by its name.
    probe = (
        "import importlib.metadata as m, promod, promod_partner_voucher;"
        f"print(promod.__file__); print(m.version({DIST!r}) == promod.__version__);"
        "print(sorted(e.name for e in m.entry_points(group='promod')))"
    )
    where, same, entry_points = _run(python, "-c", probe, cwd=tmp_path, env=env).splitlines()
    assert Path(where).is_relative_to(site), where
    assert same == "True"
    assert entry_points == "['partner_voucher']"
    assert sysconfig.get_path("purelib") != str(site)
