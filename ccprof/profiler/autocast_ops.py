"""How CUDA autocast would run each aten op: in 16-bit, in fp32, or in its inputs' dtype.

The profiler records, for every op, how it would run under ``torch.autocast("cuda")`` even
when the profiled run had no autocast (a CPU run, an fp32 script), so the cost model can
project mixed precision from the op list instead of guessing. The lists are PyTorch's own
(``aten/src/ATen/autocast_mode.h``, ``AT_FORALL_LOWER_PRECISION_FP`` and ``AT_FORALL_FP32``;
the "Autocast Op Reference" of https://pytorch.org/docs/stable/amp.html, read 2026-12), given
here by the aten names a dispatch mode sees below the autocast key (``F.linear`` arrives as
``addmm``/``mm``, ``F.softmax`` as ``_softmax``, ``F.layer_norm`` as ``native_layer_norm``).

Autocast acts in forward only. Backward kernels run in the dtypes of what forward saved, so a
backward op is classed by the forward op it differentiates (:data:`FP32_BACKWARD`,
:data:`LOWER_BACKWARD`) or, for the rest, by its inputs, as type promotion does.
"""
from __future__ import annotations

__all__ = ["LOWER", "FP32", "LOWER_BACKWARD", "FP32_BACKWARD", "autocast_class"]

# "CUDA Ops that can autocast to float16/bfloat16", as aten kernels.
LOWER = frozenset({
    "mm", "addmm", "bmm", "baddbmm", "addbmm", "addmv", "addr", "mv", "matmul", "linear",
    "convolution", "_convolution", "cudnn_convolution", "cudnn_convolution_transpose",
    "mkldnn_convolution", "convolution_overrideable", "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv_tbc", "prelu",
    "_prelu_kernel", "linalg_vecdot", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell",
    "scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_flash_attention_forward", "_efficient_attention_forward",
})

# "CUDA Ops that can autocast to float32", as aten kernels.
FP32 = frozenset({
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p",
    "reciprocal", "rsqrt", "sinh", "tan", "pow", "softplus", "native_layer_norm", "layer_norm",
    "native_group_norm", "group_norm", "frobenius_norm", "nuclear_norm", "cosine_similarity",
    "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "nll_loss_forward", "nll_loss2d",
    "nll_loss2d_forward", "nll_loss_nd", "hinge_embedding_loss", "kl_div", "l1_loss",
    "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss",
    "multilabel_margin_loss_forward", "soft_margin_loss", "triplet_margin_loss",
    "multi_margin_loss", "binary_cross_entropy_with_logits", "dist", "pdist", "cdist",
    "_cdist_forward", "renorm", "logsumexp", "_softmax", "softmax", "_log_softmax",
    "log_softmax", "_safe_softmax", "cumsum", "cumprod", "prod", "sum", "norm",
    "linalg_vector_norm", "_fused_rms_norm", "upsample_nearest1d", "upsample_nearest2d",
    "upsample_nearest3d", "upsample_linear1d", "upsample_bilinear2d", "upsample_trilinear3d",
    "upsample_bicubic2d", "cross_entropy_loss",
})

# Backward kernels of FP32 ops: fp32 in, fp32 out (the cast's backward turns the grad 16-bit).
FP32_BACKWARD = frozenset({
    "native_layer_norm_backward", "native_group_norm_backward", "_softmax_backward_data",
    "_log_softmax_backward_data", "nll_loss_backward", "nll_loss2d_backward", "mse_loss_backward",
    "l1_loss_backward", "smooth_l1_loss_backward", "huber_loss_backward",
    "binary_cross_entropy_with_logits_backward", "pow_backward", "_fused_rms_norm_backward",
    "upsample_nearest2d_backward", "upsample_bilinear2d_backward", "kl_div_backward",
})

# Backward kernels of LOWER ops that are not plain mm/bmm (those class as LOWER themselves).
LOWER_BACKWARD = frozenset({
    "convolution_backward", "cudnn_convolution_backward", "mkldnn_convolution_backward",
    "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention_backward",
    "_flash_attention_backward", "_efficient_attention_backward", "_prelu_kernel_backward",
})


def autocast_class(base: str, backward: bool) -> str:
    """``"lower"``, ``"fp32"`` or ``"promote"`` (runs in its inputs' dtype) for an aten op name.

    ``base`` is the op without namespace or overload (``"addmm"``); ``backward`` says whether it
    ran inside the autograd engine. Example: ``autocast_class("native_layer_norm", False) == "fp32"``.
    """
    name = base.rstrip("_") if base.endswith("_") and not base.startswith("_") else base
    if name in LOWER or (backward and name in LOWER_BACKWARD):
        return "lower"
    if (not backward and name in FP32) or (backward and name in FP32_BACKWARD):
        return "fp32"
    return "promote"
