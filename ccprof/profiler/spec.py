"""The run spec: what one profiling run is asked to do, typed, shared by both sides.

``runner.run_script`` (parent) writes it as JSON next to the run; the harness (child) reads it
back; ``api.profile_model`` (in-process, no script) builds one too, so the step counts and the
run's environment are described the same way however the Session runs.

Example::

    spec = RunSpec(script="train.py", args=["--lr", "3e-4"], steps=10, warmup=3, out="/tmp/x/profile.json")
    spec.to_json("/tmp/x/spec.json"); RunSpec.from_json("/tmp/x/spec.json") == spec
"""
from __future__ import annotations

import json
import os
import platform
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccprof import __version__, _serde
from ccprof.artefacts.profile import Environment

__all__ = ["RunSpec", "run_environment"]


@dataclass(frozen=True)
class RunSpec:
    script: str                                         # the path as given ("<profile_model>" in-process)
    args: list[str] = field(default_factory=list)       # the script's argv after its name
    steps: int = 10                                     # timed steps
    warmup: int = 3                                     # steps before them, not timed
    out: str = ""                                       # where the profile is written (".rank<N>" per rank)
    progress_path: str | None = None                    # progress events, one JSON line each (rank 0)
    stop_path: str | None = None                        # the parent writes why it stops the run here
    tweak: list[str] = field(default_factory=list)      # tweak ids applied at the first forward (--verify)
    tweak_options: dict[str, dict[str, Any]] = field(default_factory=dict)   # id -> its options' fields
    seed: int | None = None                             # torch/random seed (--verify runs are seeded)
    timeout: float | None = None                        # the parent's --timeout, for the message
    scan_data: bool = False                             # run the dataset scan plugin after the steps
    plugins: dict[str, str] = field(default_factory=dict)  # name -> "module[:attr]" the harness runs
    dry_run: bool = False                               # fake tensors: shapes only (ccprof.profiler.dryrun)
    # a dry run's world: GPUs per node and nodes, rank 0 of them traced (ccprof.profiler.dryrun_dist)
    dry_nproc: int = 1
    dry_nnodes: int = 1
    # a pipeline's stages, each traced by a dry run of its own rank (ccprof.profiler.dryrun_pipe): this
    # process's rank, and every traced rank (empty: rank 0 alone, until it finds a pipeline)
    dry_rank: int = 0
    dry_stage_ranks: list[int] = field(default_factory=list)

    _json_min = {"steps": 1, "warmup": 0}

    def to_json(self, path: str | Path) -> None:
        _serde.dump_json(self, path)

    @classmethod
    def from_json(cls, path: str | Path) -> "RunSpec":
        return _serde.from_dict(cls, json.loads(Path(path).read_text(encoding="utf-8")), "run spec")


def run_environment(spec: RunSpec, *, cwd: str | None = None, started_at: str = "",
                    finished_at: str = "") -> Environment:
    """The Environment section of a profile for ``spec``: versions (torch and transformers as
    the run imported them), the script, its argv and cwd, the host."""
    torch = sys.modules.get("torch")
    return Environment(
        python=platform.python_version(), torch=getattr(torch, "__version__", ""), ccprof=__version__,
        transformers=getattr(sys.modules.get("transformers"), "__version__", None),
        script=spec.script, argv=list(spec.args), cwd=cwd if cwd is not None else os.getcwd(),
        started_at=started_at, finished_at=finished_at, hostname=socket.gethostname(),
    )
