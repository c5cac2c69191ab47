"""Full-size public training scripts through `ccprof analyze --dry-run` (issue 22): karpathy/llama2.c
with Llama-2-7B shapes and karpathy/nanoGPT with GPT-2 XL shapes, vocabulary and sequence length,
batch 1, on this CPU-only machine that could not hold either run (7B in fp32 with AdamW is about
106 GB of parameters, gradients and optimizer state).

The scripts are the vendored ones of tests/external (byte for byte, see its README), made
offline with their own command-line flags only; their data is written here in their own formats
(as tests/e2e/test_external_more.py and test_external_scripts.py do), long enough for one
sequence of 2048 / 1024 tokens. Checked: exit 0, the parameter count exact against the model
family's analytic count, the FLOPs per training step within 3% of the analytic count, and the
stand-ins the profile lists, each with the script's line.

FLOP convention (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1, and
Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
Megatron-LM", section 5.1): a matmul with an (m, n) weight costs 2*m*n FLOPs per token forward;
attention's two score matmuls (Q K^T and A V) cost 2 * 2 * T^2 * d per layer and sequence (the
full T x T, causal masking not discounted); backward is twice the forward, so a training step is
3 x forward. The embedding lookup is not a matmul; the tied output head is.

Wall time here (2 CPU cores shared with other jobs, load average about 3; `--steps 2 --warmup 1`,
which a dry run makes its FLOP, memory and Python passes plus one plain step; about 0.42 GB
resident): llama2.c 7B 33-36 s, nanoGPT GPT-2 XL 35-37 s, the small nanoGPT case 13 s.
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers.external import copy_external, external_env
from tests.helpers.paths import EXTERNAL

pytestmark = pytest.mark.slow

TINY_TEXT = EXTERNAL / "word_language_model" / "data" / "tiny" / "train.txt"


_copy = copy_external


def _env(*paths: Path) -> dict[str, str]:
    return external_env(*paths, legacy_torch_load=False)


def _dry_run(cwd: Path, args: list[str], out: Path, paths: tuple[Path, ...] = ()) -> SimpleNamespace:
    """`ccprof analyze train.py --dry-run --steps 2 --warmup 1` once; the process and profile.json."""
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", "train.py", "--dry-run", "--quiet",
                           "--steps", "2", "--warmup", "1", "--out", str(out), "--", *args],
                          cwd=cwd, env=_env(*paths), capture_output=True, text=True, timeout=600)
    profile = json.loads((out / "profile.json").read_text()) if (out / "profile.json").is_file() else None
    return SimpleNamespace(root=cwd, proc=proc, profile=profile)


def _why(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout tail:\n{proc.stdout[-2000:]}\nstderr tail:\n{proc.stderr[-3000:]}"


def _complete(run) -> dict:
    assert run.proc.returncode == 0, _why(run.proc)
    p = run.profile
    assert p is not None and p["status"] == "complete", p and p.get("error")
    assert p["dry_run"] is not None
    return p


def _stand_ins(run) -> set[tuple[int, str, object]]:
    """The profile's stand-ins in train.py: (line, what, value); every stand-in is at a line of the
    script's own files."""
    rows = _complete(run)["dry_run"]["stand_ins"]
    assert all(Path(r["file"]).parent == run.root for r in rows), rows
    return {(r["line"], r["what"], r["value"]) for r in rows if r["file"] == str(run.root / "train.py")}


def _char_ids(repeat: int) -> np.ndarray:
    """Character ids (uint16) of the tiny test corpus, repeated: token ids well inside either vocabulary."""
    text = TINY_TEXT.read_text(encoding="utf-8")
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    return np.tile(np.array([stoi[c] for c in text], dtype=np.uint16), repeat)


def _train_flops(matmul_params: int, layers: int, d: int, seq: int, batch: int = 1) -> int:
    """3 x forward: 2 FLOPs per matmul weight per token, plus attention's 2 x 2 x T^2 x d per layer."""
    forward = 2 * matmul_params * seq * batch + 2 * 2 * layers * seq ** 2 * d * batch
    return 3 * forward


NUMBER = "a tensor read as a number (.item(), float())"
INDEX = "an integer tensor read as a number (.item(), int())"
BOOL = "a tensor read as a bool"
SAVE = "torch.save(..., out/ckpt.pt) not written: fake tensors have no values"
GRADSCALER = "GradScaler('cuda') scales on the CPU device"
CUDA_AVAILABLE = "torch.cuda.is_available() answered True (a dry run's GPU)"
# Reads made while ccprof's FLOP pass counts (estimate_loss at iter 0 up to the next training step)
# reach the stand-in mode under torch's FlopCounterMode: they are the script's reads all the same.


# --------------------------------------------------------------------- karpathy/llama2.c, Llama-2-7B

# Llama 2 7B (Touvron et al. 2023, Table 1 / the released params.json): dim 4096, 32 layers, 32
# heads (no grouped KV at 7B), vocab 32000, FFN hidden 11008 = llama2.c's rule from multiple_of=256
# (int(2/3 * 4 * 4096) = 10922, rounded up to a multiple of 256); context 2048 here.
LLAMA_7B = dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, vocab_size=32000, hidden=11008, seq=2048)
LLAMA_ARGS = ["--vocab_source=custom", "--vocab_size=32000", "--dim=4096", "--n_layers=32", "--n_heads=32",
              "--n_kv_heads=32", "--multiple_of=256", "--max_seq_len=2048", "--batch_size=1",
              "--gradient_accumulation_steps=1", "--compile=False", "--device=cpu", "--dtype=float32",
              "--eval_iters=1", "--max_iters=1000", "--eval_interval=1000"]


def _standins(tmp: Path) -> Path:
    """tinystories.py imports requests and sentencepiece at the top and Meta's tokenizer.py (not
    vendored): empty stand-ins, as tests/e2e/test_external_more.py writes them."""
    import importlib.util
    folder = tmp / "standins"
    folder.mkdir()
    bodies = {"requests": "", "sentencepiece": "class SentencePieceProcessor:\n    pass\n",
              "tokenizer": "class Tokenizer:\n    pass\n"}
    for name, body in bodies.items():
        if name == "tokenizer" or importlib.util.find_spec(name) is None:
            (folder / f"{name}.py").write_text(f'"""Stand-in written by {Path(__file__).name}."""\n' + body)
    return folder


@pytest.fixture(scope="module")
def llama7b(tmp_path_factory):
    """llama2.c at Llama-2-7B shapes, dry-run. Data: data/tok32000/data00.bin (val) and data01.bin
    (train), the layout tinystories.py's PretokDataset reads for --vocab_source=custom; each shard
    holds 12 sequences of 2048 tokens (it drops the last partial one and needs one whole)."""
    tmp = tmp_path_factory.mktemp("llama7b")
    root = _copy("llama2c", tmp)
    folder = root / "data" / "tok32000"
    folder.mkdir(parents=True)
    ids = _char_ids(8)                   # 25,712 tokens
    ids.tofile(folder / "data00.bin")
    ids.tofile(folder / "data01.bin")
    return _dry_run(root, LLAMA_ARGS, tmp / "report", (_standins(tmp),))


def test_llama7b_dry_run_params_exact(llama7b):
    c = LLAMA_7B
    d, h, layers, vocab = c["dim"], c["hidden"], c["n_layers"], c["vocab_size"]
    # tok_embeddings tied to output (one V x d matrix); per layer wq, wk, wv, wo (d x d each),
    # w1, w2, w3 (d x h each), two RMSNorm weights; a final RMSNorm. Meta's 6,738,415,616 counts
    # the untied output too: 6,738,415,616 - 32000 * 4096 = 6,607,343,616.
    params = vocab * d + layers * (4 * d * d + 3 * d * h + 2 * d) + d
    assert params == 6_607_343_616
    assert _complete(llama7b)["model"]["params"] == params


def test_llama7b_dry_run_flops_per_step(llama7b):
    c = LLAMA_7B
    d, h, layers, vocab, seq = c["dim"], c["hidden"], c["n_layers"], c["vocab_size"], c["seq"]
    matmul_params = layers * (4 * d * d + 3 * d * h) + vocab * d      # the output head; no norms
    truth = _train_flops(matmul_params, layers, d, seq)
    assert truth == 87_784_836_562_944                                 # 3 x 29.26e12
    flops = _complete(llama7b)["flops"]
    assert abs(flops["per_step"] - truth) <= 0.03 * truth, (flops["per_step"], truth)
    assert flops["forward"] == truth // 3        # exact: torch's counter and the convention agree forward


def test_llama7b_dry_run_stand_ins_outside_passes(llama7b):
    # :188 torch.cuda.amp.GradScaler(enabled=False) (dryrun_cuda); :328 lossf = loss.item()
    assert {(188, GRADSCALER, None), (328, NUMBER, 1.0)} <= _stand_ins(llama7b)
    assert not (llama7b.root / "out" / "ckpt.pt").exists()


def test_llama7b_dry_run_stand_ins(llama7b):
    # train.py:223 losses[k] = loss.item() (estimate_loss at iter 0); :263 print(f"... {losses['train']:.4f}")
    # (dryrun_compat formats it); :278 if losses["val"] < best_val_loss (True; no checkpoint: iter_num
    # is 0); :188 and :328 as above
    assert _stand_ins(llama7b) == {(188, GRADSCALER, None), (223, NUMBER, 1.0), (263, NUMBER, 1.0),
                                   (278, BOOL, True), (328, NUMBER, 1.0)}


# --------------------------------------------------------------------- karpathy/nanoGPT, GPT-2 XL

# GPT-2 XL (Radford et al. 2019, Table 2; Hugging Face gpt2-xl config): 48 layers, d_model 1600, 25
# heads, vocab 50257, context 1024, biases in every Linear and LayerNorm (--bias=True).
GPT2_XL = dict(n_layer=48, n_embd=1600, vocab_size=50257, block_size=1024)
NANOGPT_ARGS = ["--dataset=gpt2xl", "--device=cpu", "--compile=False", "--wandb_log=False", "--dtype=float32",
                "--eval_iters=1", "--eval_interval=1000", "--max_iters=1000", "--n_layer=48", "--n_head=25",
                "--n_embd=1600", "--block_size=1024", "--bias=True", "--batch_size=1",
                "--gradient_accumulation_steps=1"]


def _nanogpt(tmp: Path, dataset: str, repeats: int, vocab_size: int) -> Path:
    """nanoGPT copied under ``tmp`` with data/<dataset>/{train,val}.bin (``repeats`` copies of the
    character ids, uint16) and meta.pkl giving ``vocab_size``: the format of nanoGPT's
    data/shakespeare_char/prepare.py (the script reads the vocabulary size from it)."""
    root = _copy("nanogpt", tmp)
    folder = root / "data" / dataset
    folder.mkdir(parents=True)
    ids = _char_ids(repeats)
    ids.tofile(folder / "train.bin")
    ids.tofile(folder / "val.bin")
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": vocab_size}, f)
    return root


@pytest.fixture(scope="module")
def gpt2xl(tmp_path_factory):
    """nanoGPT at GPT-2 XL shapes, dry-run. Data: data/gpt2xl/{train,val}.bin uint16 token ids and
    meta.pkl with vocab_size 50257, the format of nanoGPT's data/shakespeare_char/prepare.py (the
    script reads the vocabulary size from it)."""
    tmp = tmp_path_factory.mktemp("gpt2xl")
    root = _nanogpt(tmp, "gpt2xl", 4, GPT2_XL["vocab_size"])       # 12,856 tokens
    return _dry_run(root, NANOGPT_ARGS, tmp / "report")


def test_gpt2xl_dry_run_params_exact(gpt2xl):
    c = GPT2_XL
    d, layers, vocab, block = c["n_embd"], c["n_layer"], c["vocab_size"], c["block_size"]
    # wte tied to lm_head (one V x d), wpe (block x d); per layer ln_1 and ln_2 (2d each), c_attn
    # (d x 3d + 3d), attn c_proj (d x d + d), mlp c_fc (d x 4d + 4d), mlp c_proj (4d x d + d):
    # 12 d^2 + 13 d; ln_f (2d). The "1558M" of GPT-2 XL. nanoGPT prints 1555.97M: its
    # get_num_params leaves out wpe (1024 x 1600); ccprof counts every parameter of the model.
    params = vocab * d + block * d + layers * (12 * d * d + 13 * d) + 2 * d
    assert params == 1_557_611_200
    assert _complete(gpt2xl)["model"]["params"] == params
    assert "number of parameters: 1555.97M" in gpt2xl.proc.stdout + gpt2xl.proc.stderr


def test_gpt2xl_dry_run_flops_per_step(gpt2xl):
    c = GPT2_XL
    d, layers, vocab, seq = c["n_embd"], c["n_layer"], c["vocab_size"], c["block_size"]
    truth = _train_flops(layers * 12 * d * d + vocab * d, layers, d, seq)
    assert truth == 10_520_110_694_400                                # 3 x 3.51e12
    flops = _complete(gpt2xl)["flops"]
    # a batch of block_size tokens, not the empty batch stand-ins of 1 for i and i+block_size made
    assert abs(flops["per_step"] - truth) <= 0.03 * truth, (flops["per_step"], truth)


def test_gpt2xl_dry_run_stand_ins_outside_passes(gpt2xl):
    # train.py:73 the default dtype asks torch.cuda.is_available(); :196 GradScaler(enabled=False);
    # :323 lossf = loss.item(). :124-125 data[i:i+block_size] with i from torch.randint: real values
    # (dryrun.py's shadows), no stand-in
    assert {(73, CUDA_AVAILABLE, True), (196, GRADSCALER, None), (323, NUMBER, 1.0)} <= _stand_ins(gpt2xl)
    assert not (gpt2xl.root / "out" / "ckpt.pt").exists()


def test_gpt2xl_dry_run_stand_ins(gpt2xl):
    # :225 losses[k] = loss.item(); :265 the f"{...:.4f}" print; :274 losses['val'] < best_val_loss (1e9);
    # :73, :196 and :323 as above
    assert _stand_ins(gpt2xl) == {(73, CUDA_AVAILABLE, True), (196, GRADSCALER, None), (225, NUMBER, 1.0),
                                  (265, NUMBER, 1.0), (274, BOOL, True), (323, NUMBER, 1.0)}


# ------------------------------------------------- nanoGPT small: the script's other paths, dry-run

@pytest.fixture(scope="module")
def nanogpt_paths(tmp_path_factory):
    """A small nanoGPT (2 layers) on the paths the full-size cases leave out: the script's CUDA path
    (the dry run's GPU: pin_memory().to(device, non_blocking=True), autocast bf16, fused AdamW,
    GradScaler('cuda') disabled for bf16), torch.compile on,
    gradient accumulation 2 (a backward before the optimizer's first step), an evaluation and a
    checkpoint every 2 iterations, and enough steps that estimate_mfu runs (local_iter_num >= 5:
    a dry run times one step after its passes, so --warmup 4 makes the iterations)."""
    tmp = tmp_path_factory.mktemp("nanogpt_paths")
    root = _nanogpt(tmp, "small", 1, 65)
    args = ["--dataset=small", "--device=cuda", "--compile=True", "--wandb_log=False", "--dtype=bfloat16",
            "--eval_iters=1", "--eval_interval=2", "--max_iters=1000", "--n_layer=2", "--n_head=2", "--n_embd=32",
            "--block_size=64", "--bias=True", "--batch_size=2", "--gradient_accumulation_steps=2"]
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", "train.py", "--dry-run", "--quiet",
                           "--steps", "1", "--warmup", "4", "--out", str(tmp / "report"), "--", *args],
                          cwd=root, env=_env(), capture_output=True, text=True, timeout=600)
    profile = json.loads((tmp / "report" / "profile.json").read_text())
    return SimpleNamespace(root=root, proc=proc, profile=profile)


def test_nanogpt_compile_accumulation_checkpoints_mfu_dry_run(nanogpt_paths):
    run = nanogpt_paths
    p = _complete(run)
    assert p["counters"]["compile_calls"] == 1
    out = run.proc.stdout
    assert "saving checkpoint to out" in out and not (run.root / "out" / "ckpt.pt").exists()
    assert "mfu 0.00%" in out            # estimate_mfu ran (on ccprof's host seconds: ~0)
    assert "using fused AdamW: True" in out
    rows = _stand_ins(run)
    # :286 torch.save(checkpoint, os.path.join(out_dir, 'ckpt.pt')): nothing written (dryrun.py);
    # :274 losses['val'] < best_val_loss and :225 losses[k] = loss.item() at the evaluations outside
    # the FLOP pass; :323 lossf = loss.item()
    assert {(286, SAVE, None), (274, BOOL, True), (225, NUMBER, 1.0), (323, NUMBER, 1.0)} <= rows
    # two micro-batches of 2 x 64 tokens per optimizer step: twice one forward and backward's FLOPs
    assert p["steps"]["tokens_per_step"] == 2 * 2 * 64


def test_nanogpt_ddp_in_a_world_of_two_nodes_all_reduces_once_per_step(tmp_path):
    """nanoGPT's own DDP path (it reads RANK/WORLD_SIZE from torchrun's environment) as rank 0 of 2 x 8:
    the 32 accumulation steps are split over 16 ranks (2 each), and its `require_backward_grad_sync`
    skips the all-reduce on the first, so each optimizer step all-reduces every gradient once."""
    root = _nanogpt(tmp_path, "small", 1, 65)
    args = ["--dataset=small", "--device=cuda", "--compile=False", "--wandb_log=False", "--dtype=bfloat16",
            "--eval_iters=1", "--eval_interval=2", "--max_iters=1000", "--n_layer=2", "--n_head=2", "--n_embd=32",
            "--block_size=64", "--batch_size=2", "--gradient_accumulation_steps=32"]
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", "train.py", "--dry-run", "--nproc", "8",
                           "--nnodes", "2", "--quiet", "--steps", "1", "--warmup", "4", "--gpu", "h100-sxm",
                           "--out", str(tmp_path / "report"), "--", *args],
                          cwd=root, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p = json.loads((tmp_path / "report" / "profile.json").read_text())
    assert p["world_size"] == 16 and p["steps"]["samples_per_step"] == 2 * 2
    coll = [(o["op"], o["phase"], o["count"], o["attrs"]) for o in p["ops"] if o["op"].startswith("c10d")]
    assert coll == [("c10d.allreduce_", "backward", 1, {"bytes": p["memory"]["grads_bytes"], "group": 16, "nodes": 2})]
    assert any(s["what"].startswith("DistributedDataParallel(device_ids=[0])") for s in p["dry_run"]["stand_ins"])
