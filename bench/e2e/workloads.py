"""The published end-to-end training step times ccprof's projections are checked against.

Each workload is the model and step its authors timed, rebuilt here at its real size and
recorded by ``record.record_step``; ``PUBLISHED`` says what was measured, where it was read
(2026-12) and what of it the rebuild cannot reproduce. Per-iteration times are compared: for
DeepLearningExamples' ResNet-50, ``img/s`` at batch B is ``B / (img/s)`` per iteration (their
1-GPU runs accumulate 8 iterations per SGD step; an iteration is one forward, backward and,
here, an SGD update, which is <1% of it).
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from record import meta_tokens, record_step  # noqa: E402
from resnet50 import ResNet50  # noqa: E402

from ccprof.artefacts.profile import Profile  # noqa: E402
from ccprof.hardware.translate import Policy  # noqa: E402

DLE = ("NVIDIA/DeepLearningExamples PyTorch/Classification/ConvNets/resnet50v1.5/README.md @ 7bdfc81d "
       "(pytorch-21.03 NGC container), 1-GPU training table; batch sizes from configs.yml")
NANOGPT = ("karpathy/nanoGPT README.md @ 5a725d90 (2022-12-30): 'cutting down iteration time from ~250ms / "
           "iter to 135ms / iter' - bench.py at that commit: batch 8 x 1024, bf16 autocast, TF32 matmuls, "
           "dropout 0, manual softmax attention, TorchScript GELU, untied lm_head (vocab 50257); the README "
           "names one GPU, an A100 40GB")
LLMC = ("karpathy/llm.c scripts/run_gpt2_124M.sh @ a0d5dbbd: '# on 8X A100 80GB SXM ($14/hr) steps in "
        "~300ms/iter' - GPT-2 124M, 64 x 1024 tokens per GPU, no accumulation, bf16, cuDNN flash attention, "
        "hand-fused CUDA kernels, ZeRO-1")


@dataclass(frozen=True)
class Workload:
    name: str
    gpu: str
    policy: Policy
    published_ms: float
    source: str
    build: Callable[[], Profile]
    n_gpus: int = 1
    grad_bytes_per_param: int = 4
    caveats: list[str] = field(default_factory=list)


def _resnet(batch: int) -> Callable[[], Profile]:
    def build() -> Profile:
        with torch.device("meta"):
            model = ResNet50()
        # DLE's SGD: momentum 0.875, weight decay 3.0517578125e-05 (configs.yml), label smoothing 0.1
        opt = torch.optim.SGD(model.parameters(), lr=0.256, momentum=0.875, weight_decay=3.0517578125e-05)
        x = torch.randn(batch, 3, 224, 224, device="meta")
        y = torch.randint(0, 1000, (batch,), device="meta")
        return record_step(model, lambda: F.cross_entropy(model(x), y, label_smoothing=0.1), opt, samples=batch)
    return build


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nanogpt_2022(batch: int) -> Callable[[], Profile]:
    def build() -> Profile:
        m = _load(HERE / "nanogpt_2022" / "model.py", "nanogpt_2022_model")
        cfg = m.GPTConfig(block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0)
        with torch.device("meta"):
            model = m.GPT(cfg)
        opt = model.configure_optimizers(weight_decay=1e-2, learning_rate=1e-4, betas=(0.9, 0.95))
        x, y = meta_tokens(batch, 1024, cfg.vocab_size)
        return record_step(model, lambda: model(x, y)[1], opt, samples=batch, tokens=batch * 1024, tf32_matmul=True)
    return build


def _gpt2_flash(batch: int, vocab: int = 50304) -> Callable[[], Profile]:
    """GPT-2 124M with fused (flash) attention and tied embeddings: today's nanoGPT model."""
    def build() -> Profile:
        m = _load(HERE.parents[1] / "tests" / "external" / "nanogpt" / "model.py", "nanogpt_model")
        cfg = m.GPTConfig(block_size=1024, vocab_size=vocab, n_layer=12, n_head=12, n_embd=768, dropout=0.0, bias=True)
        with torch.device("meta"):
            model = m.GPT(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
        x, y = meta_tokens(batch, 1024, vocab)
        return record_step(model, lambda: model(x, y)[1], opt, samples=batch, tokens=batch * 1024)
    return build


WORKLOADS = [
    Workload("ResNet-50 TF32 b256", "a100-80gb", Policy(tf32_cudnn=True), 256 / 938 * 1e3, DLE, _resnet(256),
             caveats=["DLE's data loader and mixup are not modelled (compute only)"]),
    Workload("ResNet-50 AMP b256", "a100-80gb", Policy(autocast="float16", tf32_cudnn=True), 256 / 2470 * 1e3,
             DLE, _resnet(256), caveats=["channels_last (NHWC) kernels not modelled"]),
    Workload("ResNet-50 FP32 b112", "v100-16gb", Policy(tf32_cudnn=False), 112 / 367 * 1e3, DLE, _resnet(112)),
    Workload("ResNet-50 AMP b256", "v100-16gb", Policy(autocast="float16", tf32_cudnn=False), 256 / 1200 * 1e3,
             DLE, _resnet(256), caveats=["channels_last (NHWC) kernels not modelled"]),
    Workload("GPT-2 124M eager b8x1024", "a100-40gb", Policy(autocast="bfloat16", tf32_matmul=True), 250.0,
             NANOGPT, _nanogpt_2022(8),
             caveats=["the TorchScript GELU ran fused on CUDA; ccprof costs its aten ops unfused",
                      "the GPU is inferred (the README's only GPU)"]),
    Workload("GPT-2 124M compiled b8x1024", "a100-40gb", Policy(autocast="bfloat16", tf32_matmul=True, compiled=True),
             135.0, NANOGPT, _nanogpt_2022(8), caveats=["the GPU is inferred (the README's only GPU)"]),
    Workload("GPT-2 124M llm.c 8 GPUs b64x1024", "a100-80gb",
             Policy(autocast="bfloat16", compiled=True, optimizer="fused"), 300.0, LLMC, _gpt2_flash(64),
             n_gpus=8, grad_bytes_per_param=2,
             caveats=["llm.c's hand-fused CUDA is costed as torch.compile's fusion of a PyTorch GPT-2",
                      "its fused classifier never materialises fp32 logits; PyTorch's cross-entropy does"]),
]
