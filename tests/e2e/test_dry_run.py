"""`ccprof analyze --dry-run` end to end: the script runs on fake tensors, the report says nothing
was measured and lists the stand-ins with the script's lines; what a dry run cannot follow stops
with the script's line; what it cannot be combined with is refused before anything runs."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.paths import ROOT

SCRIPT = ROOT / "tests" / "scripts" / "dry_llama_loop.py"


def _analyze(tmp_path, *extra, args=()):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(SCRIPT), "--dry-run", "--steps", "3",
                           "--warmup", "1", "--out", str(out), "--gpu", "h100-sxm", *extra, "--", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return proc, out


def _line(text: str) -> int:
    return next(i for i, line in enumerate(SCRIPT.read_text().splitlines(), 1) if text in line)


def test_a_dry_run_reports_what_it_assumed_and_that_nothing_was_measured(tmp_path):
    proc, out = _analyze(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = json.loads((out / "profile.json").read_text())
    stand = {(s["line"], s["what"]): s for s in profile["dry_run"]["stand_ins"]}
    assert stand[(_line("if torch.isnan(loss)"), "a NaN/Inf test read as a bool")]["value"] is False
    assert stand[(_line('print(f"loss'), "a tensor read as a number (.item(), float())")]["value"] == 1.0
    assert any("num_workers=2" in s["what"] for s in stand.values())
    assert all(s["file"] == str(SCRIPT) for s in stand.values())
    # the script's own output ran with the stand-ins (exp(1.0) = 2.7)
    assert "loss 1.000 ppl 2.7" in proc.stdout
    # shapes give the same model a real run sees
    expected = sum(p.numel() for p in _tiny_model().parameters())
    assert profile["model"]["params"] == expected and profile["flops"]["per_step"] > 0
    assert profile["memory"]["params_bytes"] == 4 * expected and profile["memory"]["peak_bytes"] > 0
    assert profile["projection"]["h100-sxm"]["step_s"] > 0
    html = (out / "report.html").read_text()
    assert "Dry run: nothing measured" in html and f"dry_llama_loop.py:{_line('if torch.isnan(loss)')}" in html
    assert "h100-sxm (74.5 GiB): fits" in html and "nothing measured (dry run)" in html
    assert "measured " + "563" not in html
    assert "Dry run on fake tensors: nothing was measured" in proc.stderr.replace("\n", " ").replace("│", " ") \
        or "Dry run on fake tensors" in proc.stderr


def _tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM
    return LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                                        max_position_embeddings=64))


def test_a_shape_taken_from_the_data_stops_with_the_scripts_line(tmp_path):
    proc, out = _analyze(tmp_path, args=("--nonzero",))
    assert proc.returncode == 3, proc.stderr[-3000:]
    line = _line("torch.nonzero")
    assert "--dry-run cannot follow nonzero: its output's shape depends on the tensor's values" in proc.stderr
    assert f"dry_llama_loop.py:{line}" in proc.stderr
    assert "ccprof failed inside" not in proc.stderr and "please report" not in proc.stderr
    error = json.loads((out / "profile.json").read_text())["error"]
    assert error["kind"] == "dry_run_unsupported" and error["line"] == line


def test_what_a_dry_run_cannot_be_combined_with_is_refused_before_it_runs(tmp_path):
    for flag, why in ((["--verify", "1"], "a dry run measures nothing"),
                      (["--scan-data"], "the dataset's values are not read in a dry run")):
        proc, out = _analyze(tmp_path, *flag)
        assert proc.returncode == 2 and f"--dry-run cannot be combined with {flag[0]}" in proc.stderr, proc.stderr
        assert why in proc.stderr and not (out / "profile.json").exists()


def test_a_gpu_script_is_traced_on_its_cuda_branches(tmp_path):
    script = ROOT / "tests" / "scripts" / "dry_cuda_branches.py"
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(script), "--dry-run", "--steps", "2",
                           "--warmup", "1", "--out", str(out), "-q", "--", "50"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = json.loads((out / "profile.json").read_text())
    assert profile["precision"]["autocast_dtype"] == "bfloat16"
    assert profile["optimizer"]["optimizers"][0]["fused"] is True
    lines = {s["what"]: s["line"] for s in profile["dry_run"]["stand_ins"]}
    text = script.read_text().splitlines()
    assert "torch.cuda.is_available()" in text[lines["torch.cuda.is_available() answered True (a dry run's GPU)"] - 1]
    assert "torch.autocast" in text[lines["torch.autocast('cuda') run as torch.autocast('cpu') with the same dtype"] - 1]
    advice = {a["tweak"]: a["status"] for a in json.loads((out / "advice.json").read_text())["advice"]}
    assert advice["mixed_precision"] == "already_applied" and advice["fused_optimizer"] == "already_applied"


ALLOC_SCRIPT = ROOT / "tests" / "scripts" / "dry_alloc_conf.py"


def _analyze_alloc(tmp_path, env_conf: str | None, *args: str):
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")}
    if env_conf is not None:
        env["PYTORCH_CUDA_ALLOC_CONF"] = env_conf
    tmp_path.mkdir()
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(ALLOC_SCRIPT), "--dry-run", "--steps", "3",
                           "--warmup", "1", "--out", str(out), "--gpu", "h100-sxm", "--", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "profile.json").read_text()), (out / "report.html").read_text()


def test_the_runs_allocator_settings_reach_the_replay_the_profile_and_the_report(tmp_path):
    default, html = _analyze_alloc(tmp_path / "default", None)
    assert default["memory"]["allocator"] is None and "caching allocator, expandable" not in html
    profile, html = _analyze_alloc(tmp_path / "env", "expandable_segments:True,garbage_collection_threshold:0.6")
    conf = profile["memory"]["allocator"]
    assert conf["expandable_segments"] and conf["source"] == "PYTORCH_CUDA_ALLOC_CONF"
    assert conf["not_replayed"] == ["garbage_collection_threshold:0.6"]
    # the same allocations, another allocator rule: the tensors' peak is the same, the reserved one moves
    assert profile["memory"]["peak_bytes"] == default["memory"]["peak_bytes"]
    assert profile["memory"]["reserved_peak_bytes"] != default["memory"]["reserved_peak_bytes"]
    assert "(caching allocator, expandable segments, from PYTORCH_CUDA_ALLOC_CONF)" in html
    assert "not replayed: garbage_collection_threshold:0.6" in html
    # set by the script's own call: recorded at its line, the dry run goes on
    profile, html = _analyze_alloc(tmp_path / "call", None, "--set-settings", "expandable_segments:True")
    line = next(i for i, t in enumerate(ALLOC_SCRIPT.read_text().splitlines(), 1) if "_set_allocator_settings(args" in t)
    assert profile["memory"]["allocator"]["source"] == \
        f"torch.cuda.memory._set_allocator_settings at dry_alloc_conf.py:{line}"
    assert profile["memory"]["reserved_peak_bytes"] == \
        _analyze_alloc(tmp_path / "env2", "expandable_segments:True")[0]["memory"]["reserved_peak_bytes"]
    assert f"from torch.cuda.memory._set_allocator_settings at dry_alloc_conf.py:{line})" in html
