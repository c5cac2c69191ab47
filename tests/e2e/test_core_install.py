"""The core install is enough (issue 23): a fresh virtual environment with `pip install .` and no
extras runs `ccprof analyze` on the bundled example, and a path that needs an extra says so with
the install command (exit 2) instead of a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXTRA_MODULES = ("transformers", "peft", "fvcore", "datasketch", "tensorboard", "lightning")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _run(argv: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_pip_install_without_extras_analyzes_the_example(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    version = torch.__version__.split("+")[0]        # the build this machine's tests use (the CPU one)
    for argv in ([py, "-m", "pip", "install", "-q", f"torch=={version}"], [py, "-m", "pip", "install", "-q", str(ROOT)]):
        res = _run(argv, tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
    have = _run([py, "-c", "import importlib.util, json; print(json.dumps([m for m in "
                 f"{EXTRA_MODULES!r} if importlib.util.find_spec(m)]))"], tmp_path)
    assert have.stdout.strip() == "[]", have.stdout            # really no extra in this environment
    ccprof = str(env_dir / "bin" / "ccprof")
    res = _run([ccprof, "analyze", str(ROOT / "examples" / "gpt_loop.py"), "--out", str(tmp_path / "rep"), "--quiet"],
               tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert all((tmp_path / "rep" / f).is_file() for f in ("profile.json", "advice.json", "report.html"))
    assert "Traceback" not in res.stderr
    res = _run([ccprof, "analyze", str(ROOT / "examples" / "gpt_loop.py"), "--out", str(tmp_path / "rep2"),
                "--scan-data", "--quiet"], tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip() == ("ccprof: --scan-data needs datasketch, which is not installed: "
                                  "pip install 'ccprof[dedup]'")
    assert not (tmp_path / "rep2" / "profile.json").exists()
    py_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (env_dir / "lib" / f"python{py_version}" / "site-packages" / "ccprof").is_dir()   # installed, not the tree
