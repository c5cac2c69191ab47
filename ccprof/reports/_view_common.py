"""The report view's shared constants and small formatters (sizes, savings, the no-price note).

Pure helpers of the section builders (``_view_cost.py``, ``_view_advice.py``, ``_view_charts.py``)
and of ``compare.py``.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from ccprof.artefacts.profile import Profile
from ccprof.artefacts.tweaks import TWEAKS
from ccprof.artefacts.vocab import STEP_PHASES
from ccprof.units import MISSING, fmt_bytes, fmt_pct, fmt_usd

# Size caps keep the self-contained report small (the custom plotly.js bundle is ~1.2 MB; the issue's
# budget is 5 MB): deeper modules and extra NVML samples stay in profile.json.
MAX_MODULE_ROWS = 400
MAX_TIMELINE_POINTS = 1500
NO_PRICE = "no price attached"
PHASE_ORDER = STEP_PHASES
MEMORY_PARTS = (("params_bytes", "parameters"), ("grads_bytes", "gradients"),
                ("optimizer_state_bytes", "optimizer state"),
                ("activations_bytes", "activations"), ("other_bytes", "other (inputs, temporaries)"))


# --------------------------------------------------------------------------- helpers
def run_known(profile: Profile) -> bool:
    """Whether the planned run has a size, so that dollars of the run mean something."""
    return profile.cost is not None and profile.cost.run_steps > 0



def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if _finite(x)]
    return sum(xs) / len(xs) if xs else None


def _now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _target_mfu(profile: Profile) -> float | None:
    proj = profile.projection or {}
    for gid in (profile.device.catalog_id, profile.cost.gpu if profile.cost else None):
        if gid and gid in proj and _finite(proj[gid].mfu):
            return proj[gid].mfu
    return None


def _no_price(profile: Profile) -> str:
    """"no price attached: <why>", without saying it twice when the reason already does."""
    why = profile.reasons.get("cost", "") or "no target GPU price"
    return why if why.lower().startswith(NO_PRICE) else f"{NO_PRICE}: {why}"


def _saved_time(frac: float | None) -> str:
    if not _finite(frac):
        return MISSING
    if abs(frac) < 5e-4:
        return "no change"
    return f"{fmt_pct(frac)} faster" if frac > 0 else f"{fmt_pct(-frac)} slower"


def _saved_memory(n: int | None) -> str:
    if not _finite(n):
        return MISSING
    if n == 0:
        return "no change"
    return f"frees {fmt_bytes(n)}" if n > 0 else f"uses {fmt_bytes(-n)} more"


def _saved_usd(usd: float | None, priced: bool) -> str:
    if not priced:
        return "run size unknown"
    if not _finite(usd):
        return MISSING
    if usd == 0:
        return "no change"
    return f"saves {fmt_usd(usd)}" if usd > 0 else f"costs {fmt_usd(-usd)} more"


def _tweak_title(tweak: str, given: str) -> str:
    if given:
        return given
    info = TWEAKS.get(tweak)
    return info.title if info else tweak



def _rel(before: float | None, after: float | None) -> float | None:
    if not _finite(before) or not _finite(after) or before == 0:
        return None
    return (after - before) / abs(before)
