"""The words every stage uses for the same things: a step's phases, the classes of aten ops,
and dtype names. One home, so that the profiler that writes ``"backward"`` into an op row, the
cost model that sums it and the report that orders it spell it the same way.

    from ccprof.artefacts.vocab import STEP_PHASES, MODEL_PHASES, MATMUL_CLASSES, dtype_name
    dtype_name(torch.bfloat16)      # "bfloat16"

Which op falls in which class is decided by ``ccprof.hardware.kernels.op_class``; this module
only names the classes it returns.
"""
from __future__ import annotations

__all__ = [
    "STEP_PHASES", "OP_PHASES", "MODEL_PHASES", "COMPUTE_PHASES", "PHASE_ALIASES", "EVAL_PHASE",
    "normalize_phase", "OP_CLASSES", "MATMUL_CLASSES", "STREAM_CLASSES", "dtype_name", "normalize_dtype",
]

# ---- phases ----------------------------------------------------------------------------------
# A step's wall time, split, in the order the report shows them: waiting for the DataLoader,
# the model's forward and backward, the optimizer step, and anything else inside the step.
STEP_PHASES = ("data", "forward", "backward", "optimizer", "other")
# The phase of an op row (the FLOP pass): the DataLoader's work runs no counted op.
OP_PHASES = ("forward", "backward", "optimizer", "other")
# The model's own passes: what autocast, torch.compile and recomputation change.
MODEL_PHASES = ("forward", "backward")
# The phases that run the model and its update (what a smaller or pruned model shrinks).
COMPUTE_PHASES = ("forward", "backward", "optimizer")
# Forwards under no_grad between optimizer steps (validation, generate()): timed apart.
EVAL_PHASE = "eval"
# Phases a harness may name that the op rows fold into one of OP_PHASES.
PHASE_ALIASES = {"data": "other"}


def normalize_phase(phase: str) -> str:
    """``phase`` as one of OP_PHASES ("data" counts as "other"); ValueError for anything else.

    Example: ``normalize_phase("data") == "other"``.
    """
    phase = PHASE_ALIASES.get(phase, phase)
    if phase not in OP_PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {OP_PHASES} or 'data'")
    return phase


# ---- op classes (what ccprof.hardware.kernels.op_class returns) -------------------------------
OP_CLASSES = ("gemm", "conv", "conv_backward", "attention", "attention_backward", "rnn", "rnn_backward",
              "softmax", "norm", "reduce", "elementwise", "foreach", "fused_optimizer", "host", "view")
# Matrix math: runs on tensor cores, keeps its own kernel under torch.compile, autocast lowers it.
MATMUL_CLASSES = frozenset({"gemm", "conv", "conv_backward", "attention", "attention_backward"})
# Memory-bound classes with their own share of bandwidth in the kernel parameters.
STREAM_CLASSES = ("elementwise", "softmax", "norm", "reduce")


# ---- dtypes ----------------------------------------------------------------------------------
def dtype_name(dtype: object) -> str:
    """A dtype as the artefacts spell it: ``torch.float32`` or ``"torch.float32"`` -> ``"float32"``.

    Example: ``dtype_name(torch.bfloat16) == "bfloat16"``; numpy dtypes give their own name.
    """
    return str(dtype).removeprefix("torch.")


def normalize_dtype(value: object) -> str:
    """"bf16" or "fp16" from the spellings users and advice details use for a mixed-precision dtype.

    Example: ``normalize_dtype("torch.float16") == "fp16"``; ``None`` is ``"bf16"``.
    """
    text = str(value or "bf16").lower().replace("torch.", "")
    if text in ("fp16", "float16", "half", "16", "16-mixed"):
        return "fp16"
    if text in ("bf16", "bfloat16", "bf16-mixed"):
        return "bf16"
    raise ValueError(f"dtype must be bf16 or fp16, not {value!r}")
