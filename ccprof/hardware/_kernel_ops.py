"""The aten names of each kernel class, and an op's base name: the table behind ``kernels.op_class``.

An op is looked up by its base name (``"aten.mm.default"`` -> ``"mm"``); names in no table are
costed as elementwise. The classes themselves are named in ``ccprof.artefacts.vocab``.
"""
from __future__ import annotations

_GEMM = frozenset({"mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "mv", "addmv",
                   "addr", "dot", "vdot", "_scaled_mm", "_addmm_activation"})
_CONV = frozenset({"convolution", "_convolution", "cudnn_convolution", "cudnn_convolution_transpose",
                   "mkldnn_convolution", "convolution_overrideable", "conv1d", "conv2d", "conv3d",
                   "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "_convolution_mode"})
_CONV_BW = frozenset({"convolution_backward", "cudnn_convolution_backward", "mkldnn_convolution_backward",
                      "convolution_backward_overrideable"})
_ATTN_FWD = frozenset({"_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
                       "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
                       "_flash_attention_forward", "_efficient_attention_forward",
                       "_scaled_dot_product_fused_attention_overrideable", "_flash_attention_forward_no_dropout_inplace"})
_ATTN_BWD = frozenset({n + "_backward" for n in ("_scaled_dot_product_flash_attention",
                                                  "_scaled_dot_product_flash_attention_for_cpu",
                                                  "_scaled_dot_product_efficient_attention",
                                                  "_scaled_dot_product_cudnn_attention",
                                                  "_scaled_dot_product_fused_attention_overrideable")}
                      | {"_flash_attention_backward", "_efficient_attention_backward"})
# fused recurrent layers (oneDNN / cuDNN): one op runs a layer over the whole sequence
_RNN = frozenset({"mkldnn_rnn_layer", "_cudnn_rnn", "miopen_rnn"})
_RNN_BW = frozenset({"mkldnn_rnn_layer_backward", "_cudnn_rnn_backward", "miopen_rnn_backward"})
_SOFTMAX = frozenset({"_softmax", "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data",
                      "_safe_softmax", "softmax", "log_softmax", "logsumexp"})
_NORM = frozenset({"native_layer_norm", "native_layer_norm_backward", "native_batch_norm",
                   "native_batch_norm_backward", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                   "_native_batch_norm_legit_functional", "cudnn_batch_norm", "cudnn_batch_norm_backward",
                   "native_group_norm", "native_group_norm_backward", "_fused_rms_norm", "_fused_rms_norm_backward",
                   "batch_norm_backward", "miopen_batch_norm", "miopen_batch_norm_backward"})
_REDUCE = frozenset({"sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "prod", "norm",
                     "linalg_vector_norm", "var", "std", "var_mean", "std_mean", "nll_loss_forward",
                     "nll_loss_backward", "nll_loss2d_forward", "nll_loss2d_backward", "cumsum", "cumprod",
                     "embedding_dense_backward", "index_add", "index_add_", "scatter_add", "scatter_add_",
                     "index_put", "index_put_", "_embedding_bag", "_embedding_bag_backward", "topk", "sort",
                     "max_pool2d_with_indices_backward", "avg_pool2d_backward", "_adaptive_avg_pool2d_backward",
                     "mse_loss", "mse_loss_backward", "binary_cross_entropy_with_logits", "multinomial",
                     "_unique2", "bincount", "histc"})
# Host work: the op makes the host wait for the device (a sync), or runs on the host only.
_HOST = frozenset({"_local_scalar_dense", "item", "nonzero", "_assert_async", "is_nonzero",
                   "equal", "allclose", "masked_select", "unique"})
# Metadata only: no kernel.
_VIEW = frozenset({"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "expand_as",
                   "as_strided", "unsqueeze", "squeeze", "select", "slice", "split", "split_with_sizes",
                   "chunk", "unbind", "detach", "alias", "lift_fresh", "view_as", "narrow", "unflatten",
                   "flatten", "_reshape_alias", "numpy_T", "diagonal", "empty", "empty_like",
                   "empty_strided", "sym_size", "sym_stride", "is_same_size", "set_", "resize_",
                   "_to_copy_view", "new_empty", "new_empty_strided", "_has_compatible_shallow_copy_type"})


def op_base(op: str) -> str:
    """``"aten.mm.default"`` / ``"aten::mm"`` / ``"mm"`` -> ``"mm"``."""
    name = op.strip()
    for prefix in ("torch.ops.aten.", "aten::", "aten."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.split(".", 1)[0]

