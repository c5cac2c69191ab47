"""Rewrite the repo's examples (and a script in someone else's style) with the tweaks that fit
them, then RUN the rewritten script for a few steps; plus the ``ccprof apply`` command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccprof.applier.codemods import apply_source
from ccprof.cli import cli
from ccprof.exit_codes import ExitCode
from tests.helpers.paths import CODEMOD_CASES as CASES
from tests.helpers.paths import ROOT


def _run(path: Path, *args: str) -> str:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=240,
                          cwd=path.parent, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _rewrite_and_run(tmp_path: Path, script: Path, tweaks: list[str], args: list[str], **options) -> str:
    result = apply_source(script.read_text(encoding="utf-8"), tweaks, options=options, path=str(script))
    assert set(result.applied) == set(tweaks), result.skipped
    again = apply_source(result.source, tweaks, options=options)
    assert again.source == result.source
    out = tmp_path / script.name.replace(".py", "_ccprof.py")
    if (script.parent / "data").is_dir():
        (tmp_path / "data").symlink_to(script.parent / "data")
    out.write_text(result.source, encoding="utf-8")
    return _run(out, *args)


@pytest.mark.slow
def test_gpt_loop_rewritten_runs(tmp_path):
    tweaks = ["tf32", "checkpointing", "lora", "mixed_precision", "grad_accumulation", "fused_optimizer",
              "early_stopping", "distributed"]
    out = _rewrite_and_run(tmp_path, ROOT / "examples" / "gpt_loop.py", tweaks,
                           ["--steps", "8", "--eval-every", "4", "--eval-iters", "1", "--batch-size", "4",
                            "--seq-len", "16"], accumulation_steps=2)
    assert "step 0: val loss" in out


@pytest.mark.slow
def test_gpt_loop_warm_start_and_fp16_runs(tmp_path):
    # warm_start loads vectors (it refuses to freeze random init): a (vocab, 64) table, the
    # example's character vocabulary x its --n-embd default
    import torch
    vocab = len(set((ROOT / "examples" / "data" / "tiny_corpus.txt").read_text(encoding="utf-8")))
    torch.save(torch.randn(vocab, 64), tmp_path / "vectors.pt")
    _rewrite_and_run(tmp_path, ROOT / "examples" / "gpt_loop.py", ["warm_start", "mixed_precision"],
                     ["--steps", "4", "--eval-every", "100", "--eval-iters", "1", "--batch-size", "4",
                      "--seq-len", "16"], dtype="fp16", embeddings_path=str(tmp_path / "vectors.pt"),
                     embedding_module="wte")


@pytest.mark.slow
def test_cnn_rewritten_runs(tmp_path):
    tweaks = ["mixed_precision", "grad_accumulation", "fused_optimizer", "dataloader", "early_stopping",
              "distributed", "lora"]
    out = _rewrite_and_run(tmp_path, ROOT / "examples" / "cnn.py", tweaks,
                           ["--epochs", "1", "--steps", "6", "--train-size", "64", "--batch-size", "8",
                            "--num-workers", "0"], num_workers=1, accumulation_steps=2)
    assert "val loss" in out


@pytest.mark.slow
def test_hf_trainer_rewritten_runs(tmp_path):
    tweaks = ["mixed_precision", "checkpointing", "lora", "grad_accumulation", "fused_optimizer",
              "early_stopping", "dataloader"]
    out = _rewrite_and_run(tmp_path, ROOT / "examples" / "hf_trainer.py", tweaks,
                           ["--steps", "4", "--eval-steps", "2", "--logging-steps", "2", "--batch-size", "4",
                            "--seq-len", "16"], accumulation_steps=2, num_workers=1)
    assert "val loss" in out


@pytest.mark.slow
def test_finetune_rewritten_runs(tmp_path):
    _rewrite_and_run(tmp_path, ROOT / "examples" / "finetune.py", ["lora", "fused_optimizer", "grad_accumulation"],
                     ["--steps", "6", "--checkpoint", str(tmp_path / "backbone.pt")])


@pytest.mark.slow
def test_script_in_someone_elses_style_rewritten_runs(tmp_path):
    tweaks = ["mixed_precision", "grad_accumulation", "fused_optimizer", "dataloader", "early_stopping", "lora",
              "distributed", "tf32"]
    out = _rewrite_and_run(tmp_path, CASES / "mnist_style.py", tweaks, ["--epochs", "2"],
                           dtype="fp16", num_workers=1)
    assert "Test set" in out


# ---------------------------------------------------------------- the command

def test_cli_writes_new_file_refuses_clobber_and_keeps_backups(tmp_path):
    script = tmp_path / "train.py"
    script.write_text((CASES / "mnist_style.py").read_text(encoding="utf-8"), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(cli, ["apply", str(script), "-t", "tf32", "-t", "fused_optimizer"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "train_ccprof.py"
    assert "allow_tf32 = True" in out.read_text() and "+torch.backends.cuda.matmul.allow_tf32" in res.output
    res = runner.invoke(cli, ["apply", str(script), "-t", "tf32"])
    assert res.exit_code == 2 and "--force" in res.output
    assert runner.invoke(cli, ["apply", str(script), "-t", "tf32", "--force"]).exit_code == 0
    original = script.read_text()
    (tmp_path / "train.py.bak").write_text("older backup")
    res = runner.invoke(cli, ["apply", str(script), "-t", "mixed_precision", "--in-place", "--option", "dtype=fp16"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "train.py.bak").read_text() == "older backup"
    assert (tmp_path / "train.py.bak.1").read_text() == original
    assert "GradScaler" in script.read_text()
    res = runner.invoke(cli, ["apply", str(script), "-t", "checkpointing", "-o", str(tmp_path / "x.py")])
    assert res.exit_code == ExitCode.NOT_ALL_APPLIED and "could not write checkpointing: looked for" in res.output
    assert not (tmp_path / "x.py").exists()


def test_cli_errors_and_from_advice(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["apply", str(tmp_path / "missing.py"), "-t", "tf32"])
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nx = (\n")
    res = runner.invoke(cli, ["apply", str(bad), "-t", "tf32"])
    assert res.exit_code == 3 and "bad.py:2" in res.output
    script = tmp_path / "cnn.py"
    script.write_text((ROOT / "examples" / "cnn.py").read_text(encoding="utf-8"))
    res = runner.invoke(cli, ["apply", str(script), "--from", str(ROOT / "tests" / "fixtures" / "advice_sample.json"),
                              "--top", "2"])
    # the top two with a rewrite, in the ranking: mixed_precision, then dataloader; tf32 between
    # them conflicts with mixed_precision (the catalog's pair) and is named, not applied
    assert res.exit_code == 0, res.output
    assert "applied mixed_precision (#1" in res.output and "applied dataloader (#" in res.output, res.output
    assert "in advice.json's ranking): conflicts with mixed_precision (#1, picked)" in res.output
    assert "applied tf32" not in res.output and "fused_optimizer" not in res.output


def test_from_advice_applies_what_each_tweak_projected(tmp_path):
    """`apply --from advice.json` takes each tweak's own typed options (issue 12):
    grad_accumulation's steps, mixed_precision's dtype, lora's rank and targets; one advisor's
    figure (the wanted batch of grad_accumulation) never becomes another codemod's option."""
    import dataclasses

    from ccprof.advisors import rank
    from ccprof.applier.codemods.selection import tweaks_from_advice
    from ccprof.artefacts.advice import Advice, AdviceSet, Projected
    from ccprof.artefacts.tweaks import GradAccumulationOptions, LoraOptions, MixedPrecisionOptions

    base = AdviceSet.from_json(ROOT / "tests" / "fixtures" / "advice_sample.json")
    projected = {"grad_accumulation": ({"micro_batch": 8, "accum_steps": 6, "wanted_batch": 48},
                                       GradAccumulationOptions(steps=6)),
                 "mixed_precision": ({"policy": {"autocast": "fp16"}}, MixedPrecisionOptions(dtype="fp16")),
                 "lora": ({"rank": 16}, LoraOptions(rank=16, targets=["q_proj", "v_proj"]))}
    advice = [Advice(tweak=t, status="recommended", details=d, options=o.to_dict(),
                     projected=Projected(usd_saved=10.0 - i)) for i, (t, (d, o)) in enumerate(projected.items())]
    picked, per_tweak = tweaks_from_advice(dataclasses.replace(base, advice=advice))
    # in the one ranking's order (the report's): these shares tie, so lower risk goes first
    assert picked == [a.tweak for a in rank(advice)] and set(picked) == set(projected)
    assert per_tweak == {t: o for t, (_, o) in projected.items()}
    # end to end: the rewrite accumulates 6 micro-batches and autocasts to float16
    path = tmp_path / "advice.json"
    dataclasses.replace(base, advice=advice[:2]).to_json(path)
    script = tmp_path / "cnn.py"
    script.write_text((ROOT / "examples" / "cnn.py").read_text(encoding="utf-8"))
    res = CliRunner().invoke(cli, ["apply", str(script), "--from", str(path), "-o", str(tmp_path / "out.py")])
    assert res.exit_code == 0, res.output
    new = (tmp_path / "out.py").read_text()
    assert "6" in new and "float16" in new and "batch_size=48" not in new, res.output


def test_from_an_older_advice_file_reads_the_projection_from_its_details(tmp_path):
    """An advice.json written before ``Advice.options`` existed: the projected figures are read
    from the details, once, at load (accumulation steps, dtype, LoRA targets as peft suffixes)."""
    import json

    from ccprof.artefacts.advice import AdviceSet
    from ccprof.artefacts.tweaks import GradAccumulationOptions, LoraOptions, MixedPrecisionOptions

    data = json.loads((ROOT / "tests" / "fixtures" / "advice_sample.json").read_text())
    data["advice"] = [
        {"tweak": "grad_accumulation", "status": "recommended", "details": {"accum_steps": 6, "wanted_batch": 48}},
        {"tweak": "mixed_precision", "status": "recommended", "details": {"policy": {"autocast": "float16"}}},
        {"tweak": "lora", "status": "recommended",
         "details": {"rank": 16, "targets": ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]}}]
    path = tmp_path / "advice.json"
    path.write_text(json.dumps(data))
    got = {a.tweak: a.tweak_options() for a in AdviceSet.from_json(path).advice}
    assert got == {"grad_accumulation": GradAccumulationOptions(steps=6),
                   "mixed_precision": MixedPrecisionOptions(dtype="fp16"),
                   "lora": LoraOptions(rank=16, targets=["q_proj", "v_proj"])}
