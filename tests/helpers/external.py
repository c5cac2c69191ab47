"""What the tests of vendored public scripts (tests/external/) share: a fresh copy of a script's
folder, and the environment its subprocess runs in."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.helpers.paths import EXTERNAL, ROOT


def copy_external(name: str, tmp: Path) -> Path:
    """tests/external/NAME copied under ``tmp`` (without __pycache__): the run may write beside it."""
    dst = tmp / name
    shutil.copytree(EXTERNAL / name, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def external_env(*paths: Path, legacy_torch_load: bool = True) -> dict[str, str]:
    """This process's environment with ``paths`` and the repository first on PYTHONPATH and no
    launcher variables (RANK, LOCAL_RANK, WORLD_SIZE). ``legacy_torch_load``: scripts written
    before torch 2.6 call torch.load() on whole pickled modules (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD)."""
    env = os.environ.copy()
    parts = [str(p) for p in paths] + [str(ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    if legacy_torch_load:
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(key, None)
    return env
