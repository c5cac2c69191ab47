"""The phases of a step, and the FLOP formulas torch's FlopCounterMode lacks.

FlopCounterMode misses some attention kernels and the fused RNN layers; ``EXTRA_FLOP_FORMULAS``
adds them (on CPU, ``F.scaled_dot_product_attention`` runs
``aten._scaled_dot_product_flash_attention_for_cpu``, which torch 2.x does not count at all).
Like torch's own formulas they count the full score matrix, causal or not, and the flash
backward counts the score recomputation. ``FlopPass`` (``flops.py``) passes the table to
FlopCounterMode as ``custom_mapping``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import (
    _flash_attention_forward_flop,
    flop_registry,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from ccprof.artefacts.vocab import OP_PHASES, PHASE_ALIASES, normalize_phase  # noqa: F401  (re-exported)

__all__ = ["PHASES", "PHASE_ALIASES", "normalize_phase", "EXTRA_FLOP_FORMULAS", "register_extra_flop_formula"]

PHASES = OP_PHASES      # the phase of an op row; the names live in ccprof.artefacts.vocab

aten = torch.ops.aten

# OpOverloadPacket -> formula, merged into FlopCounterMode's registry as ``custom_mapping``.
# Formulas take shapes (torch wraps them with its ``shape_wrapper``) unless marked
# ``_get_raw = True``, in which case they receive the tensors themselves.
EXTRA_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {}


def register_extra_flop_formula(*names: str, get_raw: bool = False):
    """Decorator: count ``aten.<name>`` with this formula; refuses a duplicate or a counted op.

    Names missing from this torch build are skipped, so one table serves several versions.
    """
    def deco(fn: Callable[..., int]) -> Callable[..., int]:
        if get_raw:
            fn._get_raw = True  # type: ignore[attr-defined]
        for name in names:
            packet = getattr(aten, name, None)
            if packet is None:
                continue
            if packet in EXTRA_FLOP_FORMULAS or packet in flop_registry:
                raise RuntimeError(f"duplicate flop formula for aten.{name}")
            EXTRA_FLOP_FORMULAS[packet] = fn
        return fn
    return deco


# Shapes are (batch, heads, seq, head_dim) for all of these (the sdpa layout).
@register_extra_flop_formula(
    "_scaled_dot_product_flash_attention_for_cpu",     # CPU sdpa (HF Llama "sdpa" on CPU)
    "_scaled_dot_product_fused_attention_overrideable",  # XPU / PrivateUse1 backends
    "_scaled_dot_product_attention_math_for_mps",      # Apple MPS
)
def _sdpa_forward_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """QK^T and PV matmuls: 4·b·h·s_q·s_k·d."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


@register_extra_flop_formula(
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_fused_attention_overrideable_backward",
)
def _sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                        out_shape=None, **kwargs) -> int:
    """Score recomputation plus the four gradient matmuls: 10·b·h·s_q·s_k·d."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


@register_extra_flop_formula("_flash_attention_forward_no_dropout_inplace", get_raw=True)
def _flash_forward_inplace_flop(out, query, key, value, cum_seq_q, cum_seq_k, max_q, max_k,
                                *args, out_val=None, **kwargs) -> int:
    """Same kernel as ``aten._flash_attention_forward`` writing into ``out``; (b, s, h, d) layout."""
    return _flash_attention_forward_flop(query, key, value, cum_seq_q, cum_seq_k, max_q, max_k)


# Fused RNN layers (oneDNN on CPU, cuDNN on CUDA) run as one op each, which torch does not
# count: every token passes through the input-to-hidden and hidden-to-hidden GEMMs of each
# layer and direction, 2·tokens·(W_ih + W_hh) FLOPs forward (gates' elementwise work left out)
# and twice that backward (gradients of the inputs and of the weights).
def _rnn_tokens(x: Any) -> int:
    return int(x.numel() // x.shape[-1]) if isinstance(x, torch.Tensor) and x.dim() >= 2 and x.shape[-1] else 0


def _weights_numel(ws: Any) -> int:
    return int(sum(w.numel() for w in ws if isinstance(w, torch.Tensor) and w.dim() == 2))


@register_extra_flop_formula("mkldnn_rnn_layer", get_raw=True)
def _mkldnn_rnn_flop(x, w_ih, w_hh, *args, out_val=None, **kwargs) -> int:
    return 2 * _rnn_tokens(x) * _weights_numel((w_ih, w_hh))


@register_extra_flop_formula("mkldnn_rnn_layer_backward", get_raw=True)
def _mkldnn_rnn_backward_flop(x, w_ih, w_hh, *args, out_val=None, **kwargs) -> int:
    return 4 * _rnn_tokens(x) * _weights_numel((w_ih, w_hh))


@register_extra_flop_formula("_cudnn_rnn", get_raw=True)
def _cudnn_rnn_flop(x, weights, *args, out_val=None, **kwargs) -> int:
    return 2 * _rnn_tokens(x) * _weights_numel(weights)


@register_extra_flop_formula("_cudnn_rnn_backward", get_raw=True)
def _cudnn_rnn_backward_flop(x, weights, *args, out_val=None, **kwargs) -> int:
    return 4 * _rnn_tokens(x) * _weights_numel(weights)
