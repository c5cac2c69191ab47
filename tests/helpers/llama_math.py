"""Closed-form parameter and FLOP counts of a Llama decoder (untied lm_head, GQA, gated MLP):
what `ccprof analyze --dry-run` must reproduce from shapes alone. Shared by
bench/dry_run_scale.py and tests/e2e/test_dry_run_scale.py (one copy).

Parameters (Touvron et al. 2023, "LLaMA", arXiv:2302.13971, architecture; Hugging Face
``LlamaForCausalLM`` layout), with head_dim = hidden / heads and kv_dim = kv_heads x head_dim:

    embed_tokens            vocab x hidden
    per layer   q_proj      hidden x hidden            k_proj, v_proj  hidden x kv_dim each
                o_proj      hidden x hidden
                gate, up    hidden x intermediate each  down_proj       intermediate x hidden
                2 RMSNorm   2 x hidden
    final norm              hidden
    lm_head                 hidden x vocab             (untied: a second copy of the vocabulary)

FLOPs of one training step (a multiply-add is 2 FLOPs; only matmuls and attention counted,
as torch.utils.flop_counter does), tokens = batch x seq:

- forward matmuls: 2 x (parameters in matmuls = all but embeddings and norms) x tokens;
- forward attention: QK^T and (scores)V, each 2 x batch x seq^2 x hidden per layer, over the
  full score matrix (causal or not: the kernels' FLOPs are counted as if the mask were absent);
- Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
  Megatron-LM" (arXiv:2104.04473), section 5.1 / appendix: forward per layer 24Bsh^2 + 4Bs^2h
  for a 4h MLP, logits 2BshV, training = 3 x forward (backward = 2 x forward) without
  recomputation. ``flops_narayanan`` is that convention with Llama's matmul shapes.
- torch.utils.flop_counter (the counter ccprof uses) counts the flash-attention backward as
  5 batched matmuls (it recomputes the scores, then dV, dP, dQ, dK) = 2.5 x the attention
  forward, so its training attention is 14 (not 12) x batch x seq^2 x hidden per layer;
  matmul layers are 3 x forward exactly. ``flops_torch_counter`` is that count.

Memory of a bf16 step under AdamW (``zero_grad(set_to_none=True)`` after ``step()``), bytes:
parameters 2P, gradients 2P, AdamW's exp_avg and exp_avg_sq 2P each (torch keeps them in the
parameter's dtype). Activations saved for backward, counted tensor by tensor as Korthikanti et
al. 2022, "Reducing Activation Recomputation in Large Transformer Models" (arXiv:2205.05198,
section 4.1) do for GPT, here for Hugging Face's Llama with SDPA (flash attention: no score
matrix is kept), n = batch x seq tokens:

    per layer   2 RMSNorms: the fp32 upcast of the input 4nh + the bf16 normalized input 2nh  = 12nh
                attention: q after RoPE, k and v repeated to every head, the output            =  8nh
                           (+ its fp32 logsumexp, 4 x n x heads)
                MLP: gate output (SiLU's input), SiLU output, up output, their product         =  8nI
    final norm  6nh;  loss: log_softmax's fp32 output over the vocabulary                       =  4nV

The peak is the larger of the end of the forward (parameters, moments and activations; no
gradients yet) and the optimizer step (parameters, gradients, moments, and the two
temporaries the single-tensor AdamW makes for its largest parameter: sqrt(exp_avg_sq) and its
quotient by the bias correction).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LlamaShape", "LLAMA3_8B", "LLAMA3_70B", "params", "matmul_params", "flops_narayanan",
           "flops_torch_counter", "adamw_train_state_bytes", "activation_bytes_bf16",
           "peak_bytes_bf16_adamw"]


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def args(self) -> list[str]:
        """The command-line flags of tests/scripts/llama_loop.py for this shape."""
        return ["--hidden", str(self.hidden), "--intermediate", str(self.intermediate),
                "--layers", str(self.layers), "--heads", str(self.heads),
                "--kv-heads", str(self.kv_heads), "--vocab", str(self.vocab)]


# Meta's published configs (config.json of meta-llama/Meta-Llama-3-8B and -70B)
LLAMA3_8B = LlamaShape(hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=128256)
LLAMA3_70B = LlamaShape(hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8, vocab=128256)


def _layer_matmul_params(c: LlamaShape) -> int:
    attn = c.hidden * c.hidden * 2 + c.hidden * c.kv_dim * 2          # q, o; k, v (GQA)
    mlp = 3 * c.hidden * c.intermediate                               # gate, up, down
    return attn + mlp


def matmul_params(c: LlamaShape) -> int:
    """Weights that multiply activations: every Linear of the layers plus lm_head (not the
    embedding, a lookup, nor the norms)."""
    return c.layers * _layer_matmul_params(c) + c.hidden * c.vocab


def params(c: LlamaShape) -> int:
    """Exact parameter count of LlamaForCausalLM (untied lm_head, no biases).

    >>> params(LLAMA3_8B)
    8030261248
    """
    norms = c.layers * 2 * c.hidden + c.hidden
    return c.vocab * c.hidden + matmul_params(c) + norms


def _attention_forward(c: LlamaShape, batch: int, seq: int) -> int:
    return 2 * 2 * batch * seq * seq * c.hidden * c.layers            # QK^T and PV, full score matrix


def flops_narayanan(c: LlamaShape, batch: int, seq: int) -> int:
    """Training FLOPs of one step, 3 x forward (Narayanan et al. 2021's convention)."""
    forward = 2 * matmul_params(c) * batch * seq + _attention_forward(c, batch, seq)
    return 3 * forward


def flops_torch_counter(c: LlamaShape, batch: int, seq: int) -> int:
    """Training FLOPs of one step as torch.utils.flop_counter counts them: matmuls 3 x forward,
    attention 1 + 2.5 x forward (its flash backward formula recomputes the scores)."""
    return 3 * 2 * matmul_params(c) * batch * seq + 7 * _attention_forward(c, batch, seq) // 2


def adamw_train_state_bytes(c: LlamaShape, bytes_per_param: int) -> int:
    """Parameters + gradients + AdamW's two moments, all in the parameters' dtype (torch.optim.AdamW
    keeps exp_avg and exp_avg_sq like the parameter): 4 copies of the parameters."""
    return 4 * params(c) * bytes_per_param


def activation_bytes_bf16(c: LlamaShape, batch: int, seq: int) -> int:
    """Bytes saved for backward by one bf16 training forward (the table in the module docstring)."""
    n = batch * seq
    per_layer = 12 * n * c.hidden + 8 * n * c.hidden + 4 * n * c.heads + 8 * n * c.intermediate
    return c.layers * per_layer + 6 * n * c.hidden + 4 * n * c.vocab


def peak_bytes_bf16_adamw(c: LlamaShape, batch: int, seq: int) -> int:
    """Peak bytes of a bf16 AdamW step: max(end of forward, optimizer step); see the module docstring."""
    p_bytes = 2 * params(c)
    largest_bytes = 2 * c.vocab * c.hidden                            # embed_tokens / lm_head
    forward_end = p_bytes + 2 * p_bytes + activation_bytes_bf16(c, batch, seq)
    optimizer = adamw_train_state_bytes(c, 2) + 2 * largest_bytes
    return max(forward_end, optimizer)
