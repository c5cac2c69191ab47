"""AdviceContext: what the advisors need beyond the Profile (target GPU, price, run size,
assumptions the user may override). Every default comes from ``constants`` with its source."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccprof.advisors import constants as C

__all__ = ["AdviceContext"]


@dataclass(frozen=True)
class AdviceContext:
    """Inputs to ``advise`` beyond the profile.

    ``gpu``: target catalog id (default: ``profile.cost.gpu``). ``usd_per_hour`` and
    ``run_steps`` override the hardware stage's price and planned run size.
    ``device_memory_bytes`` overrides the target's memory. ``gpus``: GPUs the run may use
    (default: those visible to the profiled process). ``wanted_batch_size``: the batch the user
    wants when it does not fit. ``history``: a ``trainer_state.json``, CSV or TensorBoard
    directory of validation loss. ``scan``: the dict ``data_scan.scan_dataset`` returned.
    ``catalog``: a loaded hardware catalog, when the caller has one.

    Example: ``AdviceContext(gpu="a100-80gb", run_steps=20_000, lora_rank=16)``.
    """
    gpu: str | None = None
    usd_per_hour: float | None = None
    run_steps: int | None = None
    device_memory_bytes: int | None = None
    gpus: int | None = None
    wanted_batch_size: int | None = None
    finetune_budget_frac: float = C.FINETUNE_BUDGET_FRAC
    lora_rank: int = C.LORA_RANK
    lora_targets: tuple[str, ...] | None = None     # name suffixes; None = every Linear but the head
    warm_start_run_frac: float = C.WARM_START_RUN_FRAC
    distill_depth_frac: float = C.DISTILL_DEPTH_FRAC
    prune_frac: float = C.PRUNE_STRUCTURED_FRAC
    history: str | None = None
    patience_evals: int = C.EARLY_STOP_PATIENCE_EVALS
    scan: dict[str, Any] | None = None
    catalog: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
