"""`ccprof analyze --dry-run --nproc N [--nnodes M]` against real ranks: on gloo, a real 2-rank DDP
and FSDP2 run's per-rank memory and collectives against the dry run's; a world of 2 nodes x 8 GPUs
without them, billed as 16 GPUs, its collectives spanning both nodes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.paths import ROOT

SCRIPT = ROOT / "tests" / "scripts" / "dist_train.py"


def _analyze(tmp_path, name, *extra, wrap="ddp"):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--steps", "2", "--warmup", "1",
                           "--out", str(out), "--gpu", "h100-sxm", "-q", *extra, "--", "--wrap", wrap, "--steps", "6"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "profile.json").read_text())


def _collectives(profile):
    return sorted((o["op"], o["phase"], o["count"], o["attrs"]["bytes"], o["attrs"]["group"], o["attrs"]["nodes"])
                  for o in profile["ops"] if o["op"].startswith("c10d."))


@pytest.mark.parametrize("wrap", ["ddp", "fsdp2"])
def test_per_rank_memory_and_collectives_match_real_ranks_on_gloo(tmp_path, wrap):
    real = _analyze(tmp_path, "real", "--nproc", "2", wrap=wrap)
    dry = _analyze(tmp_path, "dry", "--nproc", "2", "--dry-run", wrap=wrap)
    assert real["world_size"] == dry["world_size"] == 2
    for key in ("params_bytes", "grads_bytes", "optimizer_state_bytes"):
        assert dry["memory"][key] == real["memory"][key], key
    assert dry["memory"]["peak_bytes"] == pytest.approx(real["memory"]["peak_bytes"], rel=0.05)
    # activations are what the step saved, not FSDP's gathered weights (8 MiB of them, freed after
    # each block's forward): per block GELU's input and output (32 x 1024 fp32), blocks 1-3's input,
    # and the model's output saved by the loss (32 x 256 fp32); the batch is an input
    width = 256
    saved = 4 * 2 * (32 * 4 * width * 4) + 3 * (32 * width * 4) + 32 * width * 4
    assert real["memory"]["activations_bytes"] == dry["memory"]["activations_bytes"] == saved
    coll_real, coll_dry = _collectives(real), _collectives(dry)
    if wrap == "fsdp2":
        assert coll_dry == coll_real
    else:
        # the same gradient bytes all-reduced; the real run rebuilt its buckets in backward's order
        # (and synced that order with two small broadcasts), the dry run keeps the first layout
        def grads(rows):
            return sum(c[2] * c[3] for c in rows if c[0] == "c10d.allreduce_")
        assert grads(coll_dry) == grads(coll_real) == real["memory"]["grads_bytes"]
    assert coll_dry and {(c[4], c[5]) for c in coll_dry} == {(2, 1)}


def test_a_world_of_two_nodes_is_billed_as_sixteen_gpus_and_crosses_the_network(tmp_path):
    p = _analyze(tmp_path, "dry", "--dry-run", "--nproc", "8", "--nnodes", "2", wrap="fsdp2")
    assert p["world_size"] == 16 and (p["dry_run"]["nproc"], p["dry_run"]["nnodes"]) == (8, 2)
    assert {(c[4], c[5]) for c in _collectives(p)} == {(16, 2)}
    assert p["cost"]["detail"]["num_gpus"] == 16
    assert any("rank 0 of 16 ranks" in a for a in p["dry_run"]["assumptions"])


def test_nnodes_without_a_dry_run_is_refused_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--nnodes", "2",
                           "--out", str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--nnodes needs --dry-run" in proc.stderr
    assert not (tmp_path / "r" / "profile.json").exists()


def test_nnodes_on_a_gpu_with_no_network_figure_is_refused_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--dry-run", "--nproc", "8",
                           "--nnodes", "2", "--gpu", "h100-pcie", "--out", str(tmp_path / "r")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no network figure for h100-pcie" in proc.stderr and "Traceback" not in proc.stderr


def test_an_accelerate_script_sees_the_world_and_wraps_its_model_in_ddp(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(ROOT / "tests" / "scripts" /
                                                                         "dry_accelerate_ddp.py"),
                           "--dry-run", "--nproc", "4", "--steps", "2", "--warmup", "1", "--gpu", "h100-sxm",
                           "--out", str(out), "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0 1.0 4 DistributedDataParallel" in proc.stdout          # step, loss stand-in, processes, wrapper
    p = json.loads((out / "profile.json").read_text())
    assert p["precision"]["autocast_dtype"] == "bfloat16"
    coll = [(o["op"], o["phase"], o["attrs"]["group"]) for o in p["ops"] if o["op"].startswith("c10d")]
    assert coll == [("c10d.allreduce_", "backward", 4)]
