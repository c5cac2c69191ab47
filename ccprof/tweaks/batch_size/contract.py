"""batch_size's contract: what a batch k times as large keeps, and the learning rate it trains at.

One set of rules for the three stages (the advisor prices it, the codemod writes it, the
runtime applier applies it), so the dollars of the advice are the dollars of the rewrite:

- ``keep="samples"`` (the default): the run sees the same samples in k times fewer steps, so a
  limit in steps (``max_iters``) and every schedule length in steps (warm-up, decay) is divided
  by k; a limit in epochs stays (each epoch has k times fewer steps);
- ``keep="steps"``: the run keeps its steps and sees k times the samples, so a limit in epochs
  is multiplied by k; a limit and schedules in steps stay;
- the batch stays within the data: at most the training set (a DataLoader's dataset), and with
  no DataLoader at most half of one epoch of the script's own loops (``epoch_cap``), so an epoch
  keeps 2 steps or more: one batch of the whole epoch trains every step on the same samples;
- the learning rate: ``linear`` x k (Goyal et al. 2017, SGD with momentum: "when the minibatch
  size is multiplied by k, multiply the learning rate by k", with a gradual warm-up),
  ``sqrt`` x sqrt(k) (Malladi et al. 2022: the square-root scaling rule for Adam and RMSprop),
  ``none`` kept. By default the rule follows the optimizer's class.

Example: ``lr_factor("sqrt", 4.0)`` -> 2.0; ``steps_after(1000, 8, 32, "samples")`` -> 250.
"""
from __future__ import annotations

import math

__all__ = ["GOYAL", "MALLADI", "FULL_BATCH_OPTIMIZERS", "MIN_STEPS_PER_EPOCH", "lr_rule_for", "lr_factor",
           "steps_after", "epochs_after", "epoch_cap", "describe_rule"]

GOYAL = ("Goyal et al. 2017, 'Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour' (arXiv 1706.02677): "
         "linear learning-rate scaling with a gradual warm-up, for SGD")
MALLADI = ("Malladi et al. 2022, 'On the SDEs and Scaling Rules for Adaptive Gradient Algorithms' "
           "(NeurIPS 2022, arXiv 2205.10287): square-root learning-rate scaling for Adam and RMSprop")

# optimizers that reevaluate the loss through a closure on one fixed batch (torch.optim.LBFGS:
# "a closure that reevaluates the model and returns the loss", a quasi-Newton line search that
# assumes the same function each call): they are meant to see the whole training set at once
FULL_BATCH_OPTIMIZERS = ("LBFGS",)
_LINEAR = ("SGD", "ASGD")
_SQRT = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "SparseAdam", "Adagrad", "Adadelta")


# an epoch of the script's loops keeps at least this many mini-batches (1 is full-batch training)
MIN_STEPS_PER_EPOCH = 2


def epoch_cap(epoch_samples: int) -> int:
    """The largest batch that leaves an epoch of ``epoch_samples`` ``MIN_STEPS_PER_EPOCH`` steps.

    Example: ``epoch_cap(60)`` -> 30 (yunjey's language model: 3 steps of 20 an epoch)."""
    return max(1, epoch_samples // MIN_STEPS_PER_EPOCH)


def lr_rule_for(optimizer_class: str | None) -> str:
    """The scaling rule for an optimizer class name: linear for SGD, sqrt for the adaptive
    (Adam-type) ones, none for any other (no published rule ccprof knows for it)."""
    name = (optimizer_class or "").rsplit(".", 1)[-1]
    if name in _LINEAR:
        return "linear"
    if name in _SQRT or "Adam" in name:
        return "sqrt"
    return "none"


def lr_factor(rule: str, k: float) -> float:
    """What the learning rate is multiplied by when the batch grows k times."""
    if rule == "linear":
        return float(k)
    if rule == "sqrt":
        return math.sqrt(k)
    return 1.0


def steps_after(steps: int, old: int, new: int, keep: str) -> int:
    """A limit or a schedule length (warm-up, decay to the end) in optimizer steps under the
    contract: / k for ``samples`` (at least 1), kept for ``steps``."""
    if keep == "steps" or not steps:
        return int(steps)
    return max(1, round(steps * old / new))


def epochs_after(epochs: float, old: int, new: int, keep: str) -> float:
    """A limit in epochs under the contract: kept for ``samples``, x k for ``steps``."""
    if keep != "steps":
        return epochs
    value = epochs * new / old
    return int(value) if float(value).is_integer() else round(value, 3)


def describe_rule(rule: str, k: float, optimizer_class: str | None = None) -> str:
    """A phrase naming the rule and its source, for advice and rewrite messages.

    >>> describe_rule("sqrt", 4.0, "AdamW")
    'x 2 = sqrt(4), the square-root rule for AdamW (Malladi et al. 2022)'
    """
    who = f" for {optimizer_class}" if optimizer_class else ""
    if rule == "linear":
        return f"x {k:.3g}, the linear scaling rule{who} (Goyal et al. 2017)"
    if rule == "sqrt":
        return f"x {math.sqrt(k):.3g} = sqrt({k:.3g}), the square-root rule{who} (Malladi et al. 2022)"
    return f"kept as it is (no scaling rule{who})"
