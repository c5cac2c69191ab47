"""AdviceContext: what the advisors need beyond the Profile (target GPU, price, run size,
assumptions the user may override). Every default comes from ``constants`` with its source."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccprof.artefacts.tweaks import TWEAKS, TweakOptions, options_for

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
    ``catalog``: a loaded hardware catalog, when the caller has one. ``options``: the tweak
    options the user set (``{"lora": LoraOptions(rank=16)}``, what ``--option lora_rank=16``
    gives): an advisor projects with them, and with the catalog's defaults for the rest
    (``option``), the same values ``--verify`` and ``ccprof apply`` use.

    Example: ``AdviceContext(gpu="a100-80gb", run_steps=20_000, options={"lora": LoraOptions(rank=16)})``.
    """
    gpu: str | None = None
    usd_per_hour: float | None = None
    run_steps: int | None = None
    device_memory_bytes: int | None = None
    gpus: int | None = None
    wanted_batch_size: int | None = None
    history: str | None = None
    scan: dict[str, Any] | None = None
    catalog: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    options: dict[str, TweakOptions] = field(default_factory=dict)
    # the plan across configurations (ccprof.advisors.configurations): asked for by analyze and
    # advise (a dozen GPUs x the memory tweaks' advisors), with the user's budget and deadline
    configurations: bool = False
    budget_usd: float | None = None
    deadline_h: float | None = None

    def __post_init__(self) -> None:
        checked = {t: options_for(t, o, f"options.{t}") for t, o in (self.options or {}).items() if t in TWEAKS}
        unknown = sorted(set(self.options or {}) - set(TWEAKS))
        if unknown:
            raise KeyError(f"options for unknown tweaks: {', '.join(unknown)}")
        object.__setattr__(self, "options", checked)

    def option(self, tweak: str, name: str) -> Any:
        """Option ``name`` of ``tweak``: as the user set it, else the catalog's one default.

        >>> AdviceContext().option("lora", "rank"), AdviceContext(options={"lora": {"rank": 4}}).option("lora", "rank")
        (8, 4)
        """
        opts = self.options.get(tweak) or TWEAKS[tweak].options()
        return opts.value(name)
