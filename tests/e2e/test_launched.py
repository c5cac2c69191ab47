"""`ccprof run` inside a launch someone else started: two torchrun "nodes" on this machine, and
ranks given Slurm's variables. Real processes, gloo, the tiny DDP script tests/scripts/ddp_launched.py.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import ROOT

SCRIPT = ROOT / "tests" / "scripts" / "ddp_launched.py"
TIMEOUT_S = 300
STEPS = ["--steps", "3", "--warmup", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(tmp: Path) -> dict[str, str]:
    """The ranks' environment; their temporary files go under ``tmp`` (checked empty at the end)."""
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}


def trained(stdout: str) -> dict[int, int]:
    """rank -> the last step the script itself printed it trained."""
    last: dict[int, int] = {}
    for rank, step in re.findall(r"^trained rank=(\d+) node=\S+ step=(\d+)$", stdout, re.M):
        last[int(rank)] = max(last.get(int(rank), 0), int(step))
    return last


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """Wait for every process; kill them all only when one of them runs past TIMEOUT_S (killing
    the others as soon as the first one returns would cut off a node that ends a moment later)."""
    out = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=TIMEOUT_S)
        except BaseException:
            for q in procs:
                if q.poll() is None:
                    q.kill()
            raise
        out.append((p.returncode, so, se))
    return out


def the_report(outs: list[Path]) -> dict:
    """Exactly one --out folder has files (rank 0's); the other ranks wrote nothing."""
    written = [o for o in outs if o.exists() and any(o.iterdir())]
    assert len(written) == 1, [sorted(p.name for p in o.iterdir()) for o in written]
    assert {p.name for p in written[0].iterdir()} >= {"profile.json", "advice.json", "report.html"}
    return json.loads((written[0] / "profile.json").read_text())


def test_two_torchrun_nodes_four_ranks_one_profile_with_the_straggler(tmp_path):
    port = free_port()
    outs = [tmp_path / f"node{n}" for n in (0, 1)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "2",
         "--node-rank", str(n), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}",
         "--rdzv-id", f"ccprof-test-{port}",
         "-m", "ccprof", "run", str(SCRIPT), *STEPS, "--out", str(outs[n]), "--", "--slow-rank", "3"],
        cwd=tmp_path, env=env(tmp_path / "tmp"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (0, 1)]
    results = finish(procs)
    for code, so, se in results:
        assert code == 0, se[-3000:]
    p = the_report(outs)
    assert p["world_size"] == 4
    rows = p["ranks"]
    assert sorted(r["rank"] for r in rows) == [0, 1, 2, 3]
    assert {r["node_rank"] for r in rows} == {0, 1}
    assert {(r["node_rank"], r["local_rank"]) for r in rows} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(r["hostname"] == socket.gethostname() for r in rows)
    assert all(r["status"] == "complete" and r["peak_bytes"] for r in rows)
    # rank 3's input pipeline waits 40 ms a batch (its script's own sleep, off the CPU): its data wait marks
    # it. Whether a loaded 2-core host also pushes another rank past the 2 ms floor is load, not ccprof:
    # only rank 3 is required
    assert 3 in [r["rank"] for r in rows if r["straggler"]]
    slow = next(r for r in rows if r["rank"] == 3)
    assert slow["data_s"] > 0.03 and slow["straggler_factor"] > 1.1
    assert p["steps"]["samples_per_step"] == 4 * 16               # the global batch
    # the script's own DDP training ran its steps (1 warm-up + the passes + 3 timed) on every rank
    last = trained("".join(so for _, so, _ in results))
    assert sorted(last) == [0, 1, 2, 3]
    # every rank trained past the passes; under the full suite's load one node's ranks have printed
    # one step fewer than the other's (5 and 6: seen once, 2026-12-07, not reproduced alone) -- which
    # of the final step's print or the stop comes first there is not settled, so one step apart is allowed
    assert min(last.values()) >= 4 and max(last.values()) - min(last.values()) <= 1, last
    html = next(o for o in outs if o.exists() and any(o.iterdir())) / "report.html"
    assert 'id="rank-table"' in html.read_text() and "straggler, " in html.read_text()
    assert not [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("ccprof")]   # cleaned up


def test_srun_style_env_two_ranks(tmp_path):
    """The ranks get only Slurm's variables (as srun sets them) and MASTER_ADDR/PORT."""
    port = free_port()
    procs = []
    for rank in (0, 1):
        e = {k: v for k, v in env(tmp_path / "tmp").items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        e.update(SLURM_PROCID=str(rank), SLURM_NTASKS="2", SLURM_LOCALID="0", SLURM_NODEID=str(rank),
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ccprof", "run", str(SCRIPT), *STEPS, "--quiet", "--out", str(tmp_path / f"r{rank}")],
            cwd=tmp_path, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = finish(procs)
    for code, so, se in results:
        assert code == 0, se[-3000:]
    p = the_report([tmp_path / "r0", tmp_path / "r1"])
    assert (tmp_path / "r0" / "profile.json").exists()           # SLURM_PROCID 0 is rank 0
    assert p["world_size"] == 2
    assert [(r["rank"], r["node_rank"]) for r in p["ranks"]] == [(0, 0), (1, 1)]
    assert sorted(trained("".join(so for _, so, _ in results))) == [0, 1]
