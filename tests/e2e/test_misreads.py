"""One regression test per misread that issue 11 found on public scripts (each with its small
script under tests/scripts/); the run-size misread has its own file, tests/profiler/test_run_size.py."""
from __future__ import annotations

import pytest

from ccprof.artefacts.tweaks import measurable_here
from ccprof.hardware import attach
from ccprof.profiler.runner import run_script
from tests.helpers.paths import SCRIPTS


def test_gan_backwards_are_not_accumulation_and_a_peek_is_not_data():
    """dcgan: three backwards, two optimizers per iteration; the DDP tutorial's next(iter(loader))."""
    r = run_script(SCRIPTS / "peek_and_gan.py", [], steps=3, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    p = attach(r.profile, gpu="a100-80gb")
    assert p.steps.micro_batches == 1                          # not "grad_accumulation: already applied"
    assert [o.class_ for o in p.optimizer.optimizers] == ["Adam", "Adam"]
    assert p.data.duplicate_frac == 0.0                        # random rows: the peeked batch is not a duplicate
    assert p.data.steps_per_epoch == 16 and p.data.finite
    assert p.cost.run_steps == 80 and p.cost.run_steps_source.startswith("loops: range(5) (peek_and_gan.py:19) x loader")


# ----------------------------------------------------------------- 2: only training work in the step
def _eval_run(style: str, *args: str):
    r = run_script(SCRIPTS / "eval_between.py", ["--style", style, *args], steps=3, warmup=1, timeout_s=180)
    assert r.exit_code == 0, r.message
    return attach(r.profile, gpu="a100-80gb")


def test_validation_between_steps_is_measured_apart_and_priced():
    plain, val = _eval_run("none"), _eval_run("val")
    # the FLOP step is a clean training step either way (a pass that met validation is redone)
    assert val.flops.per_step == plain.flops.per_step > 0
    assert plain.eval is None and plain.cost.usd_eval_run == 0
    assert val.memory.peak_bytes > 0 and not any(f.kind == "pass_failed" for f in val.findings)
    ev = val.eval
    assert ev.forward_calls == 3 and ev.episodes >= 2
    # 3 forwards of 16 x 16 tokens: 3 x 16/8 = 6 training batches' forwards = 2 training steps' FLOPs
    assert ev.flops == 2 * plain.flops.per_step
    assert ev.every_steps == 2 and ev.every_source.startswith("if args.style == 'val' and it % args.every == 0")
    assert ev.where.startswith("eval_between.py:")
    # priced in the run: 40 iterations / 2 = 20 episodes, outside the step
    c = val.cost
    assert c.run_steps == 40 and c.evals_in_run == 20 and c.eval_s > 0
    assert c.usd_run == pytest.approx(c.usd_per_step * 40 + c.usd_eval_run)
    assert sum(val.steps.phase_s.values()) == pytest.approx(sum(val.steps.step_s) / len(val.steps.step_s), rel=0.05)


def test_generate_in_a_callback_is_evaluation_not_training():
    plain, gen = _eval_run("none"), _eval_run("generate")
    assert gen.flops.per_step == plain.flops.per_step
    assert gen.eval.forward_calls == 20 and gen.eval.flops > 0
    assert gen.eval.every_steps == 2


def test_a_frozen_teacher_under_no_grad_is_training_work():
    t = _eval_run("teacher")
    assert t.eval is None
    assert t.flops.per_step > _eval_run("none").flops.per_step     # the teacher's forward is in the step


# ----------------------------------------------------------------- 3: pretrained means weights were loaded
@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny-llama")
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=32)
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


@pytest.mark.parametrize("style,pretrained,source", [
    ("config", False, None),                     # run_clm --config_name: from scratch
    ("pretrained", True, "from_pretrained:"),
    ("state_copy", False, None),                 # a state dict copied from a live model
    ("state_file", True, "load_state_dict"),
])
def test_pretrained_means_weights_were_loaded(tiny_llama_dir, style, pretrained, source):
    r = run_script(SCRIPTS / "pretrained_or_not.py", ["--style", style, "--dir", str(tiny_llama_dir)],
                   steps=2, warmup=1, timeout_s=180)
    assert r.exit_code == 0, r.message
    m = r.profile.model
    assert m.pretrained is pretrained
    if source:
        assert m.loaded_from.startswith(source)


def test_run_clm_config_name_path_is_from_scratch_end_to_end(tiny_llama_dir):
    """The static from_pretrained line that did not run is inactive; finetune advice fires, LoRA does not."""
    from ccprof.advisors import advise
    from ccprof.profiler.runner import run_script as rs

    r = rs(SCRIPTS / "pretrained_or_not.py", ["--style", "config", "--dir", str(tiny_llama_dir)],
           steps=2, warmup=1, timeout_s=180)
    p = attach(r.profile, gpu="a100-80gb")
    assert not p.static.from_pretrained and "from_pretrained" in p.static.inactive
    by = advise(p).by_tweak()
    assert by["finetune"].status != "already_applied"
    assert by["lora"].status != "recommended" or by["lora"].confidence == "low"


def test_duplicates_under_replacement_sampling_estimate_distinct_items():
    """minGPT's adder draws 80 distinct problems with replacement: its repeats are the sampler's."""
    from ccprof.profiler.hooks import _distinct_items

    # 1000 uniform draws see all of 100 distinct items: D = the population
    assert _distinct_items(1000, 100, 100) == pytest.approx(100, rel=1e-3)
    # a dataset of 100 rows holding only 50 distinct ones: 200 draws see ~49.2 of them
    seen = 50 * (1 - (1 - 1 / 50) ** 200)
    assert _distinct_items(200, seen, 100) == pytest.approx(50, rel=1e-3)


# ----------------------------------------------------------------- 7: verify hides failures
def test_verify_sets_aside_what_the_baseline_wrote_when_a_rerun_refuses_it(tmp_path):
    """run_clm refuses an output folder that exists: the baseline made it, so each re-run runs
    with it set aside (moved into the report's verify-stash, restored after; nothing deleted)."""
    import json
    import subprocess
    import sys

    script = tmp_path / "refuses_existing_output.py"
    script.write_text((SCRIPTS / "refuses_existing_output.py").read_text())
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(script), "--steps", "3", "--warmup", "1",
                           "--verify", "2", "--out", str(tmp_path / "report"), "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 5), proc.stderr[-3000:]
    data = json.loads((tmp_path / "report" / "advice.json").read_text())
    ver = data["verification"]
    assert ver["measured"] and not any("FileExistsError" in line for line in ver["failed"].values()), ver
    assert (tmp_path / "run-output").is_dir()                        # the baseline's folder is back
    stash = tmp_path / "report" / "verify-stash"
    assert sorted(p.name for p in stash.iterdir()) == sorted(ver["measured"])


def test_verify_failures_are_shown_with_the_scripts_line_and_exit_5(tmp_path):
    import json
    import subprocess
    import sys

    script = tmp_path / "runs_once.py"
    script.write_text((SCRIPTS / "runs_once.py").read_text())
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(script), "--steps", "3", "--warmup", "1",
                           "--verify", "2", "--out", str(tmp_path / "report")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 5, proc.stderr[-3000:]
    assert "every --verify re-run failed" in proc.stderr
    line = "runs_once.py:13: RuntimeError: this script runs once per folder"
    assert line in proc.stderr, proc.stderr[-3000:]
    data = json.loads((tmp_path / "report" / "advice.json").read_text())
    ver = data["verification"]
    # the top two recommended tweaks a re-run can apply: as many as the advice recommends (one or two)
    prof = json.loads((tmp_path / "report" / "profile.json").read_text())
    here = (prof["device"]["type"], bool(prof["data"]["dataloader_seen"]))
    picked = [a["tweak"] for a in data["advice"] if a["status"] == "recommended" and measurable_here(a["tweak"], *here)[0]]
    assert ver["requested"] == "2" and len(ver["measured"]) == min(2, len(picked)) >= 1
    assert set(ver["failed"]) == set(ver["measured"])
    assert all(v.startswith(line) for v in ver["failed"].values())
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Every --verify re-run failed" in html and line in html
    # the baseline's measurement is kept
    assert json.loads((tmp_path / "report" / "profile.json").read_text())["steps"]["measured"] >= 3
