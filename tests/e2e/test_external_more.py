"""More public training scripts that ccprof's authors did not write, each run once through
`ccprof analyze` the way a user would, and checked against facts computed here from the script's
own code, flags and data (see tests/external/README.md for sources, commits and licences).

Conventions are those of tests/e2e/test_external_scripts.py: every vendored file is kept byte for
byte, data is made here at test time, scripts are made small with their own flags only, and each
folder is copied to a temporary directory before it runs. Every fixture analyzes its script once
(`--steps 3 --warmup 1`). Where ccprof is wrong today the test still states the right value and
is marked ``xfail(strict=True)`` with what ccprof gets wrong, so a fix shows up as an XPASS.
"""
from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import MORE, TWELVE
from tests.helpers.external import copy_external, external_env
from tests.helpers.holds import problems
from tests.helpers.paths import EXTERNAL

pytestmark = pytest.mark.slow

ALL_TWEAKS = set(TWELVE) | set(MORE)
# ~3 KB of WikiText-2-style text written for tests/e2e/test_external_scripts.py; reused as corpus here.
TINY_TEXT = EXTERNAL / "word_language_model" / "data" / "tiny" / "train.txt"


# ----------------------------------------------------------------------------- helpers

_env = external_env
_copy = copy_external


def _run(cwd: Path, argv: list[str], paths: tuple[Path, ...] = (), timeout_s: float = 600, **env):
    return subprocess.run(argv, cwd=cwd, env={**_env(*paths), **env}, capture_output=True, text=True,
                          timeout=timeout_s)


def _why(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout tail:\n{proc.stdout[-2000:]}\nstderr tail:\n{proc.stderr[-3000:]}"


def _analyze(cwd: Path, script: str, args: list[str], out: Path, paths: tuple[Path, ...] = ()):
    """`ccprof analyze` once; returns a namespace with the process and the two JSON files."""
    proc = _run(cwd, [sys.executable, "-m", "ccprof", "analyze", script, "--quiet", "--steps", "3",
                      "--warmup", "1", "--out", str(out), "--", *args], paths)
    res = SimpleNamespace(root=cwd, proc=proc, out=out, profile=None, advice=None, script=script, args=args)
    if (out / "profile.json").is_file():
        res.profile = json.loads((out / "profile.json").read_text())
    if (out / "advice.json").is_file():
        res.advice = {a["tweak"]: a for a in json.loads((out / "advice.json").read_text())["advice"]}
    return res


def _standins(tmp: Path, *modules: str) -> Path:
    """A folder of empty stand-ins for third-party modules a script imports at the top but never
    calls on the path the test runs (downloads, tokenizer training). A stand-in is written only
    when the real module is not installed; the scripts themselves are untouched."""
    folder = tmp / "standins"
    folder.mkdir(exist_ok=True)
    bodies = {"requests": "", "sentencepiece": "class SentencePieceProcessor:\n    pass\n",
              # llama2.c's tokenizer.py is Meta's code under the Llama 2 Community License: not
              # vendored; tinystories.py only imports its name at the top
              "tokenizer": "class Tokenizer:\n    pass\n"}
    for name in modules:
        if name == "tokenizer" or importlib.util.find_spec(name) is None:
            (folder / f"{name}.py").write_text(
                f'"""Stand-in written by tests/e2e/test_external_more.py: {name} is not installed."""\n'
                + bodies[name])
    return folder


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _on_path(folder: Path, package: str):
    """Import a vendored package (minGPT's `mingpt`) for this block only."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
            del sys.modules[key]


def _complete(run, params: int) -> dict:
    """Checks every finished analysis must pass; returns profile.json as a dict."""
    assert run.proc.returncode == 0, _why(run.proc)
    p = run.profile
    assert p is not None and p["status"] == "complete", p and p.get("error")
    assert p["model"]["params"] == params
    assert set(run.advice) == ALL_TWEAKS                  # FLOPs: each script's own flops test
    # the model's forward and backward FLOPs are in its modules, within 1%; the rest of the step ran
    # outside every module (regression/main.py makes its batch with a matmul of its own)
    flops = Profile.from_dict(p).flops
    assert flops.module_flops() >= 0.99 * (flops.forward + flops.backward)
    assert (run.out / "report.html").is_file() and (run.out / "report.html").stat().st_size > 0
    return p


def _ok(run) -> dict:
    assert run.proc.returncode == 0, _why(run.proc)
    assert run.profile is not None and run.profile["status"] == "complete"
    return run.profile


def _run_size(run) -> tuple[int, str]:
    cost = _ok(run)["cost"] or {}
    return cost.get("run_steps"), cost.get("run_steps_source") or ""


def _assert_run_size(run, steps: int, *names: str):
    """The planned run is the script's own: `steps` optimizer steps, read from `names`."""
    n, source = _run_size(run)
    assert n == steps, (n, source)
    assert all(name in source for name in names), source


def _flops(run) -> int:
    return _ok(run)["flops"]["per_step"]


def _close(value: float, truth: float, rel: float = 0.10) -> bool:
    return abs(value - truth) <= rel * truth


def _optimizers(run) -> list[dict]:
    return (_ok(run)["optimizer"] or {}).get("optimizers", [])


def _char_ids(text: str) -> tuple[np.ndarray, list[str]]:
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    return np.array([stoi[c] for c in text], dtype=np.uint16), chars


def _dup_frac(rows) -> float:
    rows = [tuple(r) for r in rows]
    return 1 - len(set(rows)) / len(rows)


# --------------------------------------------------------------------- karpathy/llama2.c

LLAMA_MODEL = dict(dim=32, n_layers=2, n_heads=2, n_kv_heads=2, multiple_of=16, max_seq_len=32)
LLAMA_ARGS = ["--vocab_source=custom", "--device=cpu", "--dtype=float32", "--compile=False",
              "--batch_size=4", "--max_seq_len=32", "--dim=32", "--n_layers=2", "--n_heads=2",
              "--n_kv_heads=2", "--multiple_of=16", "--gradient_accumulation_steps=2",
              "--eval_iters=2"]


def _llama_data(root: Path) -> tuple[int, np.ndarray]:
    """Pretokenized shards as tinystories.py's PretokDataset reads them for --vocab_source=custom:
    data/tok{vocab}/*.bin, uint16 token ids; the first shard is the val split, the rest train.
    Character ids of the tiny corpus. Returns (vocab size, train shard)."""
    ids, chars = _char_ids(TINY_TEXT.read_text(encoding="utf-8"))
    folder = root / "data" / f"tok{len(chars)}"
    folder.mkdir(parents=True)
    ids[:1000].tofile(folder / "data00.bin")
    ids[1000:].tofile(folder / "data01.bin")
    return len(chars), ids[1000:]


def _llama_model(root: Path, vocab: int):
    mod = _load_module(root / "model.py", "_ext_llama2c_model")
    return mod.Transformer(mod.ModelArgs(vocab_size=vocab, **LLAMA_MODEL))


@pytest.fixture(scope="module")
def llama2c(tmp_path_factory):
    """From scratch, gradient accumulation 2, --max_iters=1000 (eval only at iter 0)."""
    tmp = tmp_path_factory.mktemp("llama2c")
    root = _copy("llama2c", tmp)
    vocab, train = _llama_data(root)
    paths = (_standins(tmp, "requests", "sentencepiece", "tokenizer"),)
    run = _analyze(root, "train.py", [*LLAMA_ARGS, f"--vocab_size={vocab}", "--max_iters=1000",
                                      "--eval_interval=1000"], tmp / "report", paths)
    run.model, run.train = _llama_model(root, vocab), train
    return run


@pytest.fixture(scope="module")
def llama2c_resume(tmp_path_factory):
    """init_from='resume': a plain run of the script writes out/ckpt.pt at iter 100 (its own
    checkpoint code; one thread, as it is only the test's preparation), then the analyzed run
    loads it with load_state_dict and trains on to --max_iters=1000."""
    tmp = tmp_path_factory.mktemp("llama2c_resume")
    root = _copy("llama2c", tmp)
    vocab, _ = _llama_data(root)
    paths = (_standins(tmp, "requests", "sentencepiece", "tokenizer"),)
    common = [*LLAMA_ARGS, f"--vocab_size={vocab}"]
    plain = _run(root, [sys.executable, "train.py", *common, "--max_iters=100", "--eval_interval=100",
                        "--always_save_checkpoint=True"], paths, OMP_NUM_THREADS="1")
    assert plain.returncode == 0 and (root / "out" / "ckpt.pt").is_file(), _why(plain)
    run = _analyze(root, "train.py", [*common, "--init_from=resume", "--max_iters=1000",
                                      "--eval_interval=1000"], tmp / "report", paths)
    run.plain, run.model = plain, _llama_model(root, vocab)
    return run


def test_llama2c_analyze(llama2c):
    params = sum(p.numel() for p in llama2c.model.parameters())   # tok_embeddings/output tied
    p = _complete(llama2c, params)
    assert p["steps"]["micro_batches"] == 2                          # --gradient_accumulation_steps=2
    assert p["steps"]["tokens_per_step"] == 2 * 4 * 32
    assert p["model"]["pretrained"] is False
    assert [o["class"] for o in _optimizers(llama2c)] == ["AdamW"]


def test_llama2c_flops_match_the_scripts_own_estimate(llama2c):
    """model.estimate_mfu (PaLM App. B): 6N + 12·L·H·Q·T FLOPs per token, N = all parameters."""
    cfg = llama2c.model.params
    n = sum(p.numel() for p in llama2c.model.parameters())
    L, H, Q, T = cfg.n_layers, cfg.n_heads, cfg.dim // cfg.n_heads, cfg.max_seq_len
    estimate = (6 * n + 12 * L * H * Q * T) * (2 * 4 * T)              # 49,004,544
    assert _close(_flops(llama2c), estimate, 0.05)


def test_llama2c_no_false_flop_finding(llama2c):
    assert not [f for f in _ok(llama2c)["findings"] if "fvcore" in f["message"]]


def test_llama2c_run_size_names_max_iters(llama2c):
    n, source = _run_size(llama2c)
    assert "max_iters" in source and abs(n - 1000) <= 1, (n, source)


def test_llama2c_run_size_exact(llama2c):
    _assert_run_size(llama2c, 1001, "max_iters")


def test_llama2c_no_duplicates_in_data(llama2c):
    windows = [llama2c.train[i * 32:i * 32 + 33] for i in range(len(llama2c.train) // 32 - 1)]
    truth = _dup_frac(windows)                                       # what the data really holds
    assert truth < 0.02
    p = _ok(llama2c)
    assert (p["data"]["duplicate_frac"] or 0.0) <= truth + 0.02
    assert llama2c.advice["data_curation"]["status"] != "recommended"


def test_llama2c_advice_names_the_same_run_size_source(llama2c):
    _, source = _run_size(llama2c)
    best = llama2c.advice["right_size_gpu"]["details"]["best"]
    assert best["run_steps_source"] == source
    assert "--total-steps" not in json.dumps(llama2c.advice)


def test_llama2c_tf32_already_in_the_script(llama2c):
    """train.py sets torch.backends.cuda.matmul.allow_tf32 = True itself."""
    assert _ok(llama2c)["precision"]["tf32_matmul"] is True
    assert llama2c.advice["tf32"]["status"] == "already_applied"
    assert llama2c.advice["grad_accumulation"]["status"] == "already_applied"


def test_llama2c_resume_loads_weights(llama2c_resume):
    params = sum(p.numel() for p in llama2c_resume.model.parameters())
    p = _complete(llama2c_resume, params)
    # weights and optimizer state restored from the run's own checkpoint: a resume, not
    # fine-tuning someone else's model (finetune/LoRA advice must not treat it as pretrained)
    assert p["model"]["pretrained"] is False and p["model"]["resumed"] is True
    assert p["model"]["loaded_from"].startswith("resume")
    assert p["steps"]["micro_batches"] == 2


def test_llama2c_resume_optimizer_steps_are_calls_seen(llama2c_resume):
    (opt,) = _optimizers(llama2c_resume)
    assert opt["steps"] == _ok(llama2c_resume)["counters"]["optimizer_steps"]


def test_llama2c_resume_run_size_is_what_remains(llama2c_resume):
    assert "saving checkpoint" in llama2c_resume.plain.stdout
    _assert_run_size(llama2c_resume, 901, "max_iters")


# ------------------------------------------------------------------------ karpathy/minGPT

CHARGPT_ARGS = ["--model.model_type=None", "--model.n_layer=2", "--model.n_head=2", "--model.n_embd=32",
                "--data.block_size=32", "--trainer.batch_size=4", "--trainer.num_workers=0",
                "--trainer.device=cpu"]
ADDER_ARGS = ["--data.ndigit=1", "--trainer.batch_size=16", "--trainer.num_workers=0",
              "--trainer.device=cpu"]


def _mingpt_train_flops(model, batch: int, block: int) -> int:
    """Matmul FLOPs of one training step of minGPT's GPT: 6·(Linear weights)·tokens for the
    projections and lm_head, plus q@kᵀ and att@v (4·B·T²·C forward per layer, x3 with backward)."""
    import torch

    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    L, C = len(model.transformer.h), model.transformer.wte.embedding_dim
    return 6 * weights * batch * block + 12 * L * batch * block * block * C


def _chargpt_input(cwd: Path) -> str:
    """chargpt.py reads input.txt; the callback's prompt "O God, O God!" must be in the vocabulary."""
    text = TINY_TEXT.read_text(encoding="utf-8") + "O God, O God!\n"
    (cwd / "input.txt").write_text(text, encoding="utf-8")
    return text


@pytest.fixture(scope="module")
def chargpt(tmp_path_factory):
    """projects/chargpt/chargpt.py: infinite RandomSampler(num_samples=1e10), --trainer.max_iters,
    and an on_batch_end callback that samples 500 characters with model.generate() at iter 0."""
    tmp = tmp_path_factory.mktemp("chargpt")
    root = _copy("mingpt", tmp)
    cwd = root / "projects" / "chargpt"
    text = _chargpt_input(cwd)
    run = _analyze(cwd, "chargpt.py", [*CHARGPT_ARGS, "--trainer.max_iters=1000"], tmp / "report", (root,))
    with _on_path(root, "mingpt"):
        from mingpt.model import GPT

        cfg = GPT.get_default_config()
        cfg.model_type, cfg.n_layer, cfg.n_head, cfg.n_embd = None, 2, 2, 32
        cfg.vocab_size, cfg.block_size = len(set(text)), 32
        run.model = GPT(cfg)
    run.text = text
    return run


@pytest.fixture(scope="module")
def adder(tmp_path_factory):
    """projects/adder/adder.py: data made by the script (1-digit additions), eval_split() with
    model.generate() over both splits in the callback at iter 0, --trainer.max_iters."""
    tmp = tmp_path_factory.mktemp("adder")
    root = _copy("mingpt", tmp)
    cwd = root / "projects" / "adder"
    run = _analyze(cwd, "adder.py", [*ADDER_ARGS, "--trainer.max_iters=2000"], tmp / "report", (root,))
    with _on_path(root, "mingpt"):
        from mingpt.model import GPT

        cfg = GPT.get_default_config()
        cfg.model_type, cfg.vocab_size, cfg.block_size = "gpt-nano", 10, 3
        run.model = GPT(cfg)
        ds = _load_module(cwd / "adder.py", "_ext_mingpt_adder")
        dcfg = ds.AdditionDataset.get_default_config()
        dcfg.ndigit = 1
        train = ds.AdditionDataset(dcfg, "train")
        run.train_rows = [train[i][0].tolist() + train[i][1].tolist() for i in range(len(train))]
    return run


def test_chargpt_analyze(chargpt):
    p = _complete(chargpt, sum(q.numel() for q in chargpt.model.parameters()))
    assert p["steps"]["micro_batches"] == 1
    assert p["steps"]["tokens_per_step"] == 4 * 32
    assert p["model"]["pretrained"] is False
    assert [o["class"] for o in _optimizers(chargpt)] == ["AdamW"]


def test_chargpt_run_size_is_max_iters_not_the_infinite_sampler(chargpt):
    """The sampler claims 1e10 samples (2.5e9 batches); the run is --trainer.max_iters=1000."""
    _assert_run_size(chargpt, 1000, "max_iters")


def test_chargpt_flops_are_one_training_step(chargpt):
    """Not the on_batch_end callback's model.generate() (500 forwards after iter 0's step)."""
    assert _close(_flops(chargpt), _mingpt_train_flops(chargpt.model, 4, 32))


def test_chargpt_no_duplicates(chargpt):
    """CharDataset item i is text[i:i + 33]: 1.7% of those windows repeat (recurring phrases)."""
    truth = _dup_frac([chargpt.text[i:i + 33] for i in range(len(chargpt.text) - 32)])
    assert truth < 0.02
    assert (_ok(chargpt)["data"]["duplicate_frac"] or 0.0) <= truth + 0.02


def test_adder_analyze(adder):
    p = _complete(adder, sum(q.numel() for q in adder.model.parameters()))
    assert p["steps"]["micro_batches"] == 1
    assert p["steps"]["samples_per_step"] == 16
    assert p["model"]["pretrained"] is False


def test_adder_run_size_is_max_iters(adder):
    _assert_run_size(adder, 2000, "max_iters")


def test_adder_flops_are_one_training_step(adder):
    """Not eval_split()'s generate() over both splits, run by the callback after iter 0's step."""
    assert _close(_flops(adder), _mingpt_train_flops(adder.model, 16, 3))


def test_adder_no_duplicates_in_data(adder):
    assert _dup_frac(adder.train_rows) == 0.0
    assert (_ok(adder)["data"]["duplicate_frac"] or 0.0) < 0.02
    assert adder.advice["data_curation"]["status"] != "recommended"


# ---------------------------------------------- devnag/pytorch-generative-adversarial-networks

@pytest.fixture(scope="module")
def gan(tmp_path_factory):
    """A GAN on a 1-D Gaussian: two SGD optimizers, 5000 epochs x (20 D steps + 20 G steps), each
    D step with two backward() calls (real, fake). No flags; the fixture does not run it plainly."""
    tmp = tmp_path_factory.mktemp("gan_1d")
    root = _copy("gan_1d", tmp)
    return _analyze(root, "gan_pytorch.py", [], tmp / "report")


# G: Linear(1,5) Linear(5,5) Linear(5,1); D: Linear(4,10) Linear(10,10) Linear(10,1)
GAN_G, GAN_D = (1 * 5 + 5) + (5 * 5 + 5) + (5 * 1 + 1), (4 * 10 + 10) + (10 * 10 + 10) + (10 * 1 + 1)


def test_gan_analyze(gan):
    p = _complete(gan, GAN_G + GAN_D)
    assert sorted(p["model"]["roots"]) == ["Discriminator", "Generator"]
    assert p["model"]["pretrained"] is False


def test_gan_flops_of_a_discriminator_step(gan):
    """The measured steps are D steps: G forward on 500 noise samples (no grad), D forward and
    backward on the 4 moments of the real and of the fake batch (no input grad on D's first layer)."""
    g_fwd = 2 * 500 * (1 * 5 + 5 * 5 + 5 * 1)
    d_fwd = 2 * (4 * 10 + 10 * 10 + 10 * 1)
    d_bwd = 2 * (4 * 10 + 10 * 10 + 10 * 1) + 2 * (10 * 10 + 10 * 1)
    assert _close(_flops(gan), g_fwd + 2 * d_fwd + 2 * d_bwd, 0.05)      # 36,640


def test_gan_both_optimizers(gan):
    opts = sorted(_optimizers(gan), key=lambda o: o["param_count"])
    assert [(o["class"], o["param_count"]) for o in opts] == [("SGD", GAN_G), ("SGD", GAN_D)]
    # the profiled window holds D's first steps only (20 D steps come before any G step): D's
    # step() calls are the profiled steps, G is listed with the 0 calls it made so far
    g, d = opts
    assert d["steps"] == _ok(gan)["counters"]["optimizer_steps"] and g["steps"] == 0


def test_gan_is_not_gradient_accumulation(gan):
    assert _ok(gan)["steps"]["micro_batches"] == 1
    assert gan.advice["grad_accumulation"]["status"] != "already_applied"


def test_gan_run_size(gan):
    n, source = _run_size(gan)
    assert n in (5000 * 20, 5000 * 40) and "num_epochs" in source, (n, source)


@pytest.mark.xfail(reason="the D input is the 4-moment vector of 500 samples; ccprof reads it as one "
                          "unbatched sample per D call (data.unbatched_input; samples_per_step 2), and "
                          "the 500 samples behind each vector never reach the model", strict=True)
def test_gan_samples_per_step(gan):
    assert _ok(gan)["steps"]["samples_per_step"] == 500                 # minibatch_size = d_input_size


# -------------------------------------------------------------------- graykode/nlp-tutorial

def _literal(path: Path, name: str):
    """A literal assigned in a script (under `if __name__ == '__main__':` too), read with ast."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(name)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """5-2.BERT/BERT.py: a 6-layer d_model=768 BERT (MLM + NSP) on one fixed batch of 6, 100 steps.
    Its attention makes a fresh nn.Linear and nn.LayerNorm inside forward() (not parameters)."""
    tmp = tmp_path_factory.mktemp("bert")
    root = _copy("bert_graykode", tmp)
    run = _analyze(root, "BERT.py", [], tmp / "report")
    text = _literal(root / "BERT.py", "text")
    sentences = re.sub("[.,!?\\-]", '', text.lower()).split('\n')
    run.vocab = 4 + len(set(" ".join(sentences).split()))
    return run


def _bert_params(V: int, d=768, ff=3072, L=6, maxlen=30) -> int:
    emb = V * d + maxlen * d + 2 * d + 2 * d
    layer = 3 * (d * d + d) + (d * ff + ff) + (ff * d + d)
    head = (d * d + d) * 2 + 2 * d + (d * 2 + 2) + V                      # fc, linear, norm, classifier, bias
    return emb + L * layer + head


def test_bert_analyze(bert):
    p = _complete(bert, _bert_params(bert.vocab))
    assert p["steps"]["micro_batches"] == 1
    assert p["model"]["pretrained"] is False
    assert [o["class"] for o in _optimizers(bert)] == ["Adam"]


def test_bert_flops(bert):
    """Executed matmuls: per layer W_Q/K/V, the output Linear made anew in forward (its weight
    gets a gradient too) and the FFN, over 6x30 tokens; attention 4·B·H·T²·d_k forward; the heads
    on 6 [CLS] and 6x5 masked positions. Backward twice forward."""
    B, T, d, ff, L, H, dk, P = 6, 30, 768, 3072, 6, 12, 64, 5
    layer = (3 * d * d + d * d + 2 * d * ff) * B * T * 2 + 4 * B * H * T * T * dk
    heads = (d * d * B + d * d * B * P + d * 2 * B + d * bert.vocab * B * P) * 2
    assert _close(_flops(bert), 3 * (L * layer + heads), 0.05)            # ~46.3 GFLOP


def test_bert_run_size(bert):
    _assert_run_size(bert, 100, "range(100)")


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seq2seq")
    root = _copy("seq2seq_graykode", tmp)
    return _analyze(root, "Seq2Seq.py", [], tmp / "report")


def test_seq2seq_analyze(seq2seq):
    n_class, hid = 29, 128                                                  # 'SEP' + a..z
    rnn = hid * n_class + hid * hid + 2 * hid
    p = _complete(seq2seq, 2 * rnn + hid * n_class + n_class)
    assert p["steps"]["micro_batches"] == 1
    assert p["model"]["pretrained"] is False


def test_seq2seq_flops(seq2seq):
    """nn.RNN (tanh) encoder over 5 steps and decoder over 6, batch 6, one-hot inputs (no input
    grad), h0 = zeros (no grad), Linear(128, 29) on the 36 decoder outputs."""
    B, Te, Td, I, H, C = 6, 5, 6, 29, 128, 29
    fwd = 2 * (I * H + H * H) * (Te + Td) * B + 2 * H * C * Td * B
    bwd = fwd + 2 * H * H * ((Te + Td) * B - B) + 2 * H * C * Td * B
    assert _close(_flops(seq2seq), fwd + bwd, 0.02)                      # 8,073,216


def test_seq2seq_no_false_flop_finding(seq2seq):
    assert not [f for f in _ok(seq2seq)["findings"] if "fvcore" in f["message"]]


def test_seq2seq_run_size(seq2seq):
    _assert_run_size(seq2seq, 5000, "range(5000)")


@pytest.fixture(scope="module")
def textcnn(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("textcnn")
    root = _copy("textcnn_graykode", tmp)
    run = _analyze(root, "TextCNN.py", [], tmp / "report")
    run.vocab = len(set(" ".join(_literal(root / "TextCNN.py", "sentences")).split()))
    return run


def test_textcnn_analyze(textcnn):
    convs = 3 * (3 * 1 * 2 * 2 + 3)                                         # Conv2d(1, 3, (2, 2)) x3
    p = _complete(textcnn, textcnn.vocab * 2 + 9 * 2 + 2 + convs)
    assert p["steps"]["micro_batches"] == 1
    assert p["model"]["pretrained"] is False


def test_textcnn_flops(textcnn):
    """Three Conv2d(1, 3, (2, 2)) on [6, 1, 3, 2] (output 2x1), Linear(9, 2, bias=False);
    embeddings need input grads, so every backward is twice its forward."""
    conv = 2 * 6 * 3 * 2 * 1 * (1 * 2 * 2)
    fwd = 3 * conv + 2 * 6 * 9 * 2
    assert _flops(textcnn) == 3 * fwd                                       # 3,240


def test_textcnn_run_size(textcnn):
    _assert_run_size(textcnn, 5000, "range(5000)")


# ------------------------------------------------------------------ yunjey/pytorch-tutorial

def _rnnlm_data(root: Path) -> None:
    (root / "data").mkdir()
    (root / "data" / "train.txt").write_text(TINY_TEXT.read_text(encoding="utf-8") * 3, encoding="utf-8")


@pytest.fixture(scope="module")
def rnnlm(tmp_path_factory):
    """02-intermediate/language_model: LSTM(128 -> 1024) LM, truncated BPTT over a corpus tensor
    sliced by hand (no DataLoader), num_epochs = 5. data/train.txt made here (Penn Treebank style:
    space-separated words, one sentence a line): the tiny corpus three times."""
    tmp = tmp_path_factory.mktemp("rnnlm")
    root = _copy("rnnlm_yunjey", tmp)
    _rnnlm_data(root)
    run = _analyze(root, "main.py", [], tmp / "report")
    corpus = _load_module(root / "data_utils.py", "_ext_yunjey_data").Corpus()
    ids = corpus.get_data(str(root / "data" / "train.txt"), 20)
    run.vocab, run.steps_per_epoch = len(corpus.dictionary), len(range(0, ids.size(1) - 30, 30))
    return run


def test_rnnlm_analyze(rnnlm):
    V, E, H = rnnlm.vocab, 128, 1024
    p = _complete(rnnlm, V * E + (4 * H * E + 4 * H * H + 8 * H) + (H * V + V))
    assert p["steps"]["micro_batches"] == 1
    assert p["steps"]["tokens_per_step"] == 20 * 30
    assert p["model"]["pretrained"] is False


def test_rnnlm_flops(rnnlm):
    V, E, H, tokens = rnnlm.vocab, 128, 1024, 20 * 30
    fwd = 2 * 4 * H * (E + H) * tokens + 2 * H * V * tokens
    assert _close(_flops(rnnlm), 3 * fwd)


def test_rnnlm_run_size(rnnlm):
    _assert_run_size(rnnlm, 5 * rnnlm.steps_per_epoch, "num_epochs")


# ---------------------------------------------------------------- jcjohnson/pytorch-examples

@pytest.fixture(scope="module")
def dynamic_net(tmp_path_factory):
    """nn/dynamic_net.py: each forward reuses middle_linear 0-3 times at random; 500 steps of
    SGD(momentum) on one fixed batch."""
    tmp = tmp_path_factory.mktemp("dynamic_net")
    root = _copy("dynamic_net", tmp)
    return _analyze(root, "dynamic_net.py", [], tmp / "report")


def test_dynamic_net_analyze(dynamic_net):
    p = _complete(dynamic_net, (1000 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10))
    assert p["steps"]["micro_batches"] == 1
    assert p["model"]["pretrained"] is False
    assert [o["class"] for o in _optimizers(dynamic_net)] == ["SGD"]


def test_dynamic_net_flops_match_one_of_the_depths(dynamic_net):
    """x needs no grad: input_linear's backward is its weight grad only."""
    N, D, H, O = 64, 1000, 100, 10
    per_k = [2 * N * (D * H + k * H * H + H * O) * 2 + 2 * N * (k * H * H + H * O) for k in range(4)]
    assert any(_close(_flops(dynamic_net), f, 0.01) for f in per_k), (_flops(dynamic_net), per_k)


def test_dynamic_net_run_size(dynamic_net):
    _assert_run_size(dynamic_net, 500, "range(500)")


def test_dynamic_net_optimizer_steps(dynamic_net):
    (opt,) = _optimizers(dynamic_net)
    assert opt["steps"] == _ok(dynamic_net)["counters"]["optimizer_steps"] > 0


def test_dynamic_net_fused_sgd_follows_what_the_steps_reached(dynamic_net):
    """A step that reuses middle_linear 0 times leaves its parameters without a gradient; fused
    SGD(momentum) then fails once they get their first one late (TypeError in torch._fused_sgd_), so
    the advice must not recommend it when the run saw such a step: (3/4)^10 of the runs (~6%, its
    10 steps all reached middle_linear) did not, and then there is nothing in the run to say so."""
    (opt,) = _optimizers(dynamic_net)
    advice = dynamic_net.advice["fused_optimizer"]
    if opt["grad_gap_params"]:
        assert opt["grad_gaps"] == ["middle_linear.weight", "middle_linear.bias"]
        assert advice["status"] == "not_applicable" and "middle_linear.weight" in advice["rationale"]
    else:
        assert advice["status"] == "recommended"


# ------------------------------------------------------------------------ pytorch/examples gat

GAT_ARGS = ["--num-heads", "1", "--hidden-dim", "8", "--no-accel"]
GAT_NODES, GAT_FEATURES, GAT_CLASSES = 1650, 16, 3


def _cora(root: Path) -> None:
    """cora/cora.content (id, 0/1 features, label; tab-separated) and cora/cora.cites (cited id,
    citing id) as in the LINQS Cora archive; with both present main.py skips its download. 1650
    nodes: main.py trains on idx[1600:] of a random permutation, tests on [:1200], validates on
    [1200:1600]."""
    rng = np.random.default_rng(0)
    ids = rng.choice(10**6, GAT_NODES, replace=False)
    labels = np.array(["Theory", "Neural_Networks", "Rule_Learning"])[np.arange(GAT_NODES) % GAT_CLASSES]
    feats = rng.integers(0, 2, (GAT_NODES, GAT_FEATURES))
    (root / "cora").mkdir()
    with open(root / "cora" / "cora.content", "w") as f:
        for i in range(GAT_NODES):
            f.write("\t".join([str(ids[i]), *map(str, feats[i]), labels[i]]) + "\n")
    with open(root / "cora" / "cora.cites", "w") as f:
        for _ in range(3 * GAT_NODES):
            a, b = rng.choice(ids, 2, replace=False)
            f.write(f"{a}\t{b}\n")


@pytest.fixture(scope="module")
def gat(tmp_path_factory):
    """gat/main.py: full-batch GAT, one optimizer step per epoch, then two no-grad evaluations
    (train and val masks) inside train_iter(); --epochs 300 (the default)."""
    tmp = tmp_path_factory.mktemp("gat")
    root = _copy("gat", tmp)
    _cora(root)
    paths = (_standins(tmp, "requests"),)
    run = _analyze(root, "main.py", [*GAT_ARGS, "--epochs", "300"], tmp / "report", paths)
    run.dry = _run(root, [sys.executable, "main.py", *GAT_ARGS, "--dry-run"], paths)
    return run


def _gat_forward(N=GAT_NODES, F=GAT_FEATURES, d=8, C=GAT_CLASSES) -> tuple[int, int]:
    """(forward FLOPs, the first layer's input-grad FLOPs that backward skips)."""
    l1 = 2 * N * F * d + 2 * (2 * N * d) + 2 * N * N * d
    l2 = 2 * N * d * C + 2 * (2 * N * C) + 2 * N * N * C
    return l1 + l2, 2 * N * F * d


def test_gat_runs_plainly(gat):
    assert gat.dry.returncode == 0, _why(gat.dry)
    assert "Test set results" in gat.dry.stdout


def test_gat_analyze(gat):
    p = _complete(gat, (GAT_FEATURES * 8 + 2 * 8) + (8 * GAT_CLASSES + 2 * GAT_CLASSES))
    assert p["steps"]["micro_batches"] == 1
    assert p["model"]["pretrained"] is False
    assert [o["class"] for o in _optimizers(gat)] == ["Adam"]


def test_gat_flops_are_one_training_step(gat):
    fwd, skipped = _gat_forward()
    assert _close(_flops(gat), fwd + (2 * fwd - skipped), 0.05)          # 180,985,200


def test_gat_run_size(gat):
    _assert_run_size(gat, 300, "epochs")


# ------------------------------------------------- `ccprof apply` of each script's top codemods
#
# The definition of done for these scripts: `ccprof apply` of its top codemods yields a script that
# runs and whose profile reports those tweaks `already_applied`. For each fixture (not the llama2.c
# resume variant), the tweaks below are the first two of its advice.json, in rank order, that are
# recommended and have a codemod (`ccprof apply` supports them). compile counts its compilation
# against the run (issue 20): on these few-hundred-step runs it saves nothing, and seq2seq's,
# textcnn's and rnnlm's next rewritable tweak is fused_optimizer. batch_size is not recommended
# where the script's data fixes the batch (DATA_BOUND below: seq2seq, textcnn, dynamic_net, gat,
# gan): gat's next ones are fused_optimizer and tf32, dynamic_net's tf32 (its fused_optimizer is not
# recommended: test_dynamic_net_fused_sgd_follows_what_the_steps_reached); rnnlm's batch_size (capped
# at half an epoch) ranks after tf32 and fused_optimizer now, and stays as the capped case. Each tweak is
# applied on its own to a fresh copy of the folder (the new file sits next to the original, so
# sibling imports still work) and the new file is analyzed once with the fixture's own flags.

def _top_codemods(run, k: int = 2) -> list[str]:
    from ccprof.applier.codemods import codemod_ids

    have = set(codemod_ids())
    return [t for t, a in run.advice.items() if a["status"] == "recommended" and t in have][:k]


def _fresh(name: str, tmp: Path) -> tuple[Path, tuple[Path, ...]]:
    """The fixture's folder copied afresh, with the data its fixture makes: (cwd, import paths)."""
    if name == "llama2c":
        root = _copy("llama2c", tmp)
        _llama_data(root)
        return root, (_standins(tmp, "requests", "sentencepiece", "tokenizer"),)
    if name in ("chargpt", "adder"):
        root = _copy("mingpt", tmp)
        cwd = root / "projects" / name
        if name == "chargpt":
            _chargpt_input(cwd)
        return cwd, (root,)
    if name == "rnnlm":
        root = _copy("rnnlm_yunjey", tmp)
        _rnnlm_data(root)
        return root, ()
    if name == "gat":
        root = _copy("gat", tmp)
        _cora(root)
        return root, (_standins(tmp, "requests"),)
    folder = {"gan": "gan_1d", "bert": "bert_graykode", "seq2seq": "seq2seq_graykode",
              "textcnn": "textcnn_graykode", "dynamic_net": "dynamic_net"}[name]
    return _copy(folder, tmp), ()


def _low_precision_frac(profile: dict) -> float:
    """Share of the step's measured FLOPs that ran in bf16/fp16."""
    total = sum(op["flops"] for op in profile["ops"])
    low = sum(op["flops"] for op in profile["ops"] if op["dtype"] in ("bfloat16", "float16"))
    return low / total if total else 0.0


# Cases whose advice is "no_saving" for the fixture's short run alone (a one-time cost outweighs the
# saving over it); the rewrite is what a user planning a longer run keeps, and apply must answer as
# for "recommended" advice
NO_SAVING_HERE = {
    ("llama2c", "compile"): "compiling (~12 s once) outweighs the saving over --max_iters=1000 "
                            "(break-even ~5,450 steps)",
    ("chargpt", "compile"): "compiling (~10 s once) outweighs the saving over --trainer.max_iters=1000 "
                            "(break-even ~17,300 steps)",
    ("adder", "compile"): "compiling (~14 s once) outweighs the saving over --trainer.max_iters=2000 "
                          "(break-even ~16,800 steps)",
}

APPLY_CASES = [
    pytest.param("llama2c", "compile"),
    pytest.param("llama2c", "batch_size"),
    pytest.param("chargpt", "batch_size"),
    # the fixture's analysis, then the compiled rewrite's: Inductor compiles GPT's forward and
    # backward for the CPU (~1m45 of CPU time), past the default 300 s on a shared 2-core host
    pytest.param("chargpt", "compile", marks=pytest.mark.timeout(600)),
    pytest.param("adder", "batch_size"),
    pytest.param("adder", "compile"),
    pytest.param("adder", "dataloader"),
    pytest.param("gan", "compile"),
    pytest.param("bert", "mixed_precision"),
    pytest.param("bert", "tf32"),
    pytest.param("seq2seq", "fused_optimizer"),
    pytest.param("textcnn", "fused_optimizer"),
    # the batch is capped at half of one epoch's 60 samples (3 steps of 20): batch 30, 2 steps an epoch
    pytest.param("rnnlm", "batch_size"),
    pytest.param("rnnlm", "fused_optimizer"),
    pytest.param("rnnlm", "tf32"),
    pytest.param("dynamic_net", "tf32"),
    pytest.param("gat", "tf32"),
    pytest.param("gat", "mixed_precision"),
]


@pytest.mark.parametrize("name, tweak", APPLY_CASES)
def test_apply_top_codemod_runs_and_is_already_applied(name, tweak, request, tmp_path):
    """As a user keeps a tweak: `ccprof apply SCRIPT --from advice.json -t TWEAK` (the advice's own
    options, the run's flags and the places the run took its values from), then the rewrite runs
    under `ccprof analyze` with the command line apply prints (the run's, or with the options the
    rewrite needs there) and reports the tweak in effect."""
    base = request.getfixturevalue(name)
    _ok(base)
    status = base.advice[tweak]["status"]
    assert status == "recommended" or status == "no_saving" and (name, tweak) in NO_SAVING_HERE, (
        status, _top_codemods(base))
    cwd, paths = _fresh(name, tmp_path)
    new = f"{Path(base.script).stem}_{tweak}.py"
    res = _run(cwd, [sys.executable, "-m", "ccprof", "apply", base.script, "--from", str(base.out / "advice.json"),
                     "-t", tweak, "-o", new, "--json"], paths)
    assert res.returncode == 0, _why(res)
    done = json.loads(res.stdout)
    outcome = next(o for o in done["tweaks"] if o["tweak"] == tweak)
    assert outcome["outcome"] in ("written", "turn_on"), outcome                            # (a)
    script, args = (new, base.args) if done["written"] else (base.script, base.args)
    assert (cwd / script).is_file()
    if done["command"]:                  # the run's command line sets what the rewrite changes
        script, args = Path(done["command"][1]).name, done["command"][2:]
    run = _analyze(cwd, script, args, tmp_path / "report", paths)
    p = _ok(run)                                                                           # (b)
    assert p["error"] is None, p["error"]
    advice = run.advice[tweak]
    if tweak == "batch_size":
        # in effect: the run trains at the advice's batch, and what the advisor says now starts from it
        # (it proposes at most 8x the current batch per step, so it may propose a further step; or the
        # batch now holds the whole training set)
        after = base.advice["batch_size"]["details"]["batch_after"]
        assert p["data"]["batch_size"] == after, p["data"]                                 # (c)
        assert advice["status"] == "already_applied" or advice["details"].get("batch_before") == after, \
            advice["rationale"]
    else:
        assert advice["status"] == "already_applied", advice["rationale"]                 # (c)
    # and the tweak really covers the training step:
    if tweak == "mixed_precision":   # autocast around the forward: its matmuls ran in bf16
        assert _low_precision_frac(p) > 0.5, (_low_precision_frac(p), advice["rationale"])
    if tweak == "compile":           # every model the optimizers train is compiled
        roots = p["model"]["roots"]
        assert p["counters"].get("compile_calls", 0) >= len(roots), (roots, p["counters"])
        assert all("OptimizedModule" in r for r in roots), roots


# batch_size advice that the script's data cannot follow: a refusal that names what to change
DATA_BOUND = [
    # every step is make_batch() of the script's 6 hard-coded word pairs / sentences
    pytest.param("seq2seq", "same 6 samples", id="seq2seq"),
    pytest.param("textcnn", "same 6 samples", id="textcnn"),
    # x = torch.randn(N, D_in) built once, N = 64: the same tensor every step
    pytest.param("dynamic_net", "same 64 samples", id="dynamic_net"),
    # full-batch GAT on the whole graph: model(*input) with the 1650 nodes' features every step
    pytest.param("gat", "same 1,650 samples", id="gat"),
    # D is fed the 4 moments of 500 samples, a 1-D vector: one sample, no batch dimension
    pytest.param("gan", "no batch dimension", id="gan"),
]


@pytest.mark.parametrize("name, says", DATA_BOUND)
def test_batch_size_advice_the_data_cannot_follow(name, says, request):
    """A larger batch needs more data (or a batch dimension), not a setting: the advice is not
    recommended, and it says what the user would have to change."""
    run = request.getfixturevalue(name)
    _ok(run)
    a = run.advice["batch_size"]
    assert a["status"] == "not_applicable", a["rationale"]
    assert says in a["rationale"], a["rationale"]
    assert "not a setting" in a["rationale"], a["rationale"]
    if name == "gan":
        assert "[N, 4]" in a["rationale"] and run.profile["data"]["unbatched_input"] is True
    else:
        assert "more samples" in a["rationale"] and run.profile["data"]["same_inputs"] is True


# ------------------------------------------------- what every analysis must hold (issue 20)
HOLDS = ["llama2c", "chargpt", "adder", "gan", "bert", "seq2seq", "textcnn", "rnnlm", "dynamic_net", "gat"]


@pytest.mark.parametrize("name", HOLDS)
def test_the_advice_holds_together(name, request):
    """No two advisors contradict each other; "recommended" is a positive saving (tests.helpers.holds)."""
    run = request.getfixturevalue(name)
    _ok(run)
    assert problems(run.out) == []
