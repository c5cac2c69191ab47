"""Real training scripts that ccprof's authors did not write, run through `ccprof analyze` and
`ccprof apply` exactly as a user would (see tests/external/README.md for sources and licences).

Each script is copied to a temporary folder (it writes checkpoints and reads data relative to
its cwd), given tiny data made here, and run with flags that make it small. Known ccprof bugs
are recorded as ``xfail(strict=True)`` so that a fix turns them into failures to clean up.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import MORE, TWELVE
from tests.helpers.external import copy_external, external_env
from tests.helpers.holds import problems
from tests.helpers.paths import EXTERNAL

pytestmark = pytest.mark.slow

ALL_TWEAKS = set(TWELVE) | set(MORE)
TINY_TEXT = EXTERNAL / "word_language_model" / "data" / "tiny" / "train.txt"


_env = external_env
_copy = copy_external


def _run(cwd: Path, argv: list[str], timeout_s: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout_s)


def _analyze(cwd: Path, script: str, args: list[str], out: Path) -> subprocess.CompletedProcess:
    return _run(cwd, [sys.executable, "-m", "ccprof", "analyze", script, "--quiet", "--steps", "3",
                      "--warmup", "1", "--out", str(out), "--", *args])


def _apply(cwd: Path, script: str, tweak: str, output: str) -> subprocess.CompletedProcess:
    return _run(cwd, [sys.executable, "-m", "ccprof", "apply", script, "-t", tweak, "-o", output])


def _load_module(path: Path, name: str):
    """Import a script's module file under a unique name (every script has a `model.py`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _why(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout tail:\n{proc.stdout[-2000:]}\nstderr tail:\n{proc.stderr[-3000:]}"


def _check_artefacts(out: Path, params: int, bytes_per_param: int = 4) -> dict:
    """The checks every complete analysis must pass; returns profile.json as a dict."""
    profile = json.loads((out / "profile.json").read_text())
    assert profile["status"] == "complete", profile.get("error")
    assert profile["model"]["params"] == params
    assert profile["flops"]["per_step"] > 0
    # the model's forward and backward FLOPs are in its modules, within 1%; the rest of the step ran
    # outside every module (regression/main.py makes its batch with a matmul of its own)
    flops = Profile.from_dict(profile).flops
    assert flops.module_flops() >= 0.99 * (flops.forward + flops.backward)
    assert profile["memory"]["params_bytes"] == bytes_per_param * params
    advice = json.loads((out / "advice.json").read_text())
    assert {a["tweak"] for a in advice["advice"]} == ALL_TWEAKS
    assert (out / "report.html").is_file() and (out / "report.html").stat().st_size > 0
    return profile


def _advice(out: Path) -> dict[str, dict]:
    return {a["tweak"]: a for a in json.loads((out / "advice.json").read_text())["advice"]}


# --------------------------------------------------------------------------- karpathy/nanoGPT

NANOGPT_MODEL = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=False, dropout=0.0)
NANOGPT_ARGS = ["--dataset=tiny_char", "--device=cpu", "--compile=False", "--wandb_log=False",
                "--eval_iters=2", "--eval_interval=1000", "--log_interval=1", "--n_layer=2",
                "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4",
                "--gradient_accumulation_steps=2"]


def _nanogpt_data(root: Path) -> int:
    """A character-level dataset in nanoGPT's format (data/shakespeare_char/prepare.py):
    uint16 train.bin / val.bin and meta.pkl with vocab_size, stoi, itos. Returns vocab size."""
    text = TINY_TEXT.read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(0.9 * len(ids))
    folder = root / "data" / "tiny_char"
    folder.mkdir(parents=True)
    ids[:n].tofile(folder / "train.bin")
    ids[n:].tofile(folder / "val.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
    return len(chars)


@pytest.fixture(scope="module")
def nanogpt(tmp_path_factory):
    """nanoGPT copied, given data, analyzed once: (folder, analyze process, out dir, model)."""
    tmp = tmp_path_factory.mktemp("nanogpt")
    root = _copy("nanogpt", tmp)
    vocab = _nanogpt_data(root)
    out = tmp / "report"
    proc = _analyze(root, "train.py", [*NANOGPT_ARGS, "--max_iters=1000"], out)
    mod = _load_module(root / "model.py", "_ext_nanogpt_model")
    model = mod.GPT(mod.GPTConfig(vocab_size=vocab, **NANOGPT_MODEL))
    return root, proc, out, model


def test_nanogpt_analyze(nanogpt):
    root, proc, out, model = nanogpt
    assert proc.returncode == 0, _why(proc)
    params = sum(p.numel() for p in model.parameters())     # tied wte/lm_head counted once
    # the script's own count (model.configure_optimizers prints both groups)
    printed = [int(n.replace(",", "")) for n in re.findall(r"tensors: \d+, with ([\d,]+) parameters", proc.stdout)]
    assert sum(printed) == params
    profile = _check_artefacts(out, params)
    assert profile["steps"]["micro_batches"] == 2             # --gradient_accumulation_steps=2
    assert profile["steps"]["tokens_per_step"] == 2 * 4 * 32  # accumulation x batch x block
    assert profile["model"]["repeated_blocks"][0]["container"] == "transformer.h"


def test_nanogpt_flops_match_the_scripts_own_estimate(nanogpt):
    """nanoGPT's estimate_mfu (PaLM App. B): 6N + 12·L·H·Q·T FLOPs per token, N without wpe."""
    root, proc, out, model = nanogpt
    assert proc.returncode == 0, _why(proc)
    cfg = model.config
    L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
    tokens = 2 * 4 * T
    estimate = (6 * model.get_num_params() + 12 * L * H * Q * T) * tokens   # 45,858,816
    per_step = json.loads((out / "profile.json").read_text())["flops"]["per_step"]
    assert abs(per_step - estimate) / estimate < 0.05


def test_nanogpt_compile_not_claimed_when_disabled(nanogpt):
    root, proc, out, model = nanogpt
    assert proc.returncode == 0, _why(proc)
    assert _advice(out)["compile"]["status"] != "already_applied"


def test_nanogpt_scratch_run_is_not_a_finetune(nanogpt):
    root, proc, out, model = nanogpt
    assert proc.returncode == 0, _why(proc)
    profile = json.loads((out / "profile.json").read_text())
    assert profile["model"]["pretrained"] is False
    advice = _advice(out)
    assert advice["finetune"]["status"] != "already_applied"
    assert advice["warm_start"]["status"] != "already_applied"


def test_nanogpt_single_process_gets_no_ddp_no_sync_advice(nanogpt):
    root, proc, out, model = nanogpt
    assert proc.returncode == 0, _why(proc)
    assert "no_sync" not in _advice(out)["distributed"]["rationale"]


def test_nanogpt_mixed_precision_already_in_the_script(nanogpt):
    """train.py builds torch.amp.autocast itself (used on CUDA): the codemod leaves it alone."""
    root, proc, out, model = nanogpt
    res = _apply(root, "train.py", "mixed_precision", "train_mp.py")
    assert res.returncode == 0, _why(res)
    assert "already applied" in res.stderr
    assert not (root / "train_mp.py").exists()


def test_nanogpt_rewritten_scripts_run(nanogpt, tmp_path):
    """early_stopping on train.py and checkpointing on model.py (the blocks loop lives there);
    both rewrites compile and train two iterations plainly."""
    root, proc, out, model = nanogpt
    work = tmp_path / "nanogpt"
    shutil.copytree(root, work, ignore=shutil.ignore_patterns("__pycache__", "out"))
    res = _apply(work, "train.py", "early_stopping", "train_es.py")
    assert res.returncode == 0 and "applied early_stopping" in res.stderr, _why(res)
    res = _apply(work, "model.py", "checkpointing", "model_ckpt.py")
    assert res.returncode == 0 and "applied checkpointing" in res.stderr, _why(res)
    (work / "model.py").write_text((work / "model_ckpt.py").read_text())
    compile((work / "train_es.py").read_text(), "train_es.py", "exec")
    run = _run(work, [sys.executable, "train_es.py", *NANOGPT_ARGS, "--max_iters=2"])
    assert run.returncode == 0, _why(run)
    assert re.search(r"iter 2: loss \d", run.stdout)


# ------------------------------------------------------- pytorch/examples word_language_model

WLM_ARGS = ["--data", "./data/tiny", "--emsize", "16", "--nhid", "16", "--nlayers", "2",
            "--bptt", "8", "--batch_size", "4", "--log-interval", "1000"]


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wlm")
    root = _copy("word_language_model", tmp)
    out = tmp / "report"
    proc = _analyze(root, "main.py", [*WLM_ARGS, "--epochs", "3", "--save", str(tmp / "model.pt")], out)
    mod = _load_module(root / "model.py", "_ext_wlm_model")
    corpus = _load_module(root / "data.py", "_ext_wlm_data").Corpus(str(root / "data" / "tiny"))
    model = mod.RNNModel("LSTM", len(corpus.dictionary), 16, 16, 2, 0.2, False)
    return root, proc, out, model


def test_word_language_model_analyze(word_lm):
    root, proc, out, model = word_lm
    assert proc.returncode == 0, _why(proc)
    profile = _check_artefacts(out, sum(p.numel() for p in model.parameters()))
    assert profile["steps"]["kind"] == "backward"


def _cpu_runs_bf16_lstm() -> bool:
    """oneDNN's bf16 LSTM needs AVX-512 on x86: a CPU without it cannot run the rewritten LSTM
    under CPU autocast at all (the rewrite is right; this machine cannot execute it)."""
    import torch

    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(4, 4)(torch.randn(2, 1, 4))
        return True
    except RuntimeError:
        return False


def test_word_language_model_rewrites_run(word_lm, tmp_path):
    root, proc, out, model = word_lm
    tweaks = ("mixed_precision", "tf32", "early_stopping") if _cpu_runs_bf16_lstm() else ("tf32", "early_stopping")
    for tweak in tweaks:
        res = _apply(root, "main.py", tweak, f"main_{tweak}.py")
        assert res.returncode == 0 and f"applied {tweak}" in res.stderr, _why(res)
        compile((root / f"main_{tweak}.py").read_text(), tweak, "exec")
        run = _run(root, [sys.executable, f"main_{tweak}.py", *WLM_ARGS, "--epochs", "1",
                          "--save", str(tmp_path / f"{tweak}.pt")])
        assert run.returncode == 0, _why(run)
        assert "End of training" in run.stdout


def _autocast_bodies(source: str) -> list[str]:
    """Source of the body of every `with torch.autocast(...)` block."""
    bodies = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.With) and any("autocast" in ast.unparse(i.context_expr) for i in node.items):
            bodies.append("\n".join(ast.unparse(s) for s in node.body))
    return bodies


def test_word_language_model_autocast_covers_the_forward(word_lm):
    root, proc, out, model = word_lm
    res = _apply(root, "main.py", "mixed_precision", "main_amp_check.py")
    assert res.returncode == 0, _why(res)
    bodies = _autocast_bodies((root / "main_amp_check.py").read_text())
    assert any("model(data" in body for body in bodies)


# ------------------------------------------------------------------ pytorch/examples regression

@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regression")
    root = _copy("regression", tmp)
    out = tmp / "report"
    return root, _analyze(root, "main.py", [], out), out


def test_regression_analyze(regression):
    root, proc, out = regression
    assert proc.returncode == 0, _why(proc)
    profile = _check_artefacts(out, 4 + 1)      # fc = torch.nn.Linear(POLY_DEGREE=4, 1)
    assert profile["steps"]["kind"] == "backward"


def test_regression_rewrites_run(regression):
    """The script loops until its loss is under 1e-3; a fixed seed keeps the run finite."""
    root, proc, out = regression
    for tweak in ("mixed_precision", "tf32"):
        res = _apply(root, "main.py", tweak, f"main_{tweak}.py")
        assert res.returncode == 0 and f"applied {tweak}" in res.stderr, _why(res)
        source = (root / f"main_{tweak}.py").read_text()
        if tweak == "mixed_precision":
            assert any("fc(batch_x)" in body for body in _autocast_bodies(source))
        run = _run(root, [sys.executable, "-c", "import runpy, torch; torch.manual_seed(0); "
                          f"runpy.run_path('main_{tweak}.py', run_name='__main__')"], timeout_s=120)
        assert run.returncode == 0, _why(run)
        assert run.stdout.startswith("Loss: ")


@pytest.mark.parametrize("name", ["nanogpt", "word_lm", "regression"])
def test_the_advice_holds_together(name, request):
    """No two advisors contradict each other; "recommended" is a positive saving (tests.helpers.holds)."""
    _, proc, out, *_ = request.getfixturevalue(name)
    assert proc.returncode == 0, _why(proc)
    assert problems(out) == []
