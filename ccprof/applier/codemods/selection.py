"""What ``ccprof apply`` needs besides the rewrite: tweaks from an advice file, ``--option``
values, and output/backup paths. No file is written here."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ccprof.applier.codemods import codemod_ids

__all__ = ["tweaks_from_advice", "parse_option", "default_output_path", "backup_path"]

# Advice.details keys an advisor may fill -> the codemod option they set
DETAIL_OPTIONS = {
    "batch_after": "batch_size", "batch_size": "batch_size", "wanted_batch": "batch_size",
    "accumulation_steps": "accumulation_steps", "micro_batches": "accumulation_steps",
    "dtype": "dtype", "lora_rank": "lora_rank", "rank": "lora_rank",
    "lora_targets": "lora_targets", "target_modules": "lora_targets",
    "patience": "patience", "num_workers": "num_workers", "embeddings_path": "embeddings_path",
}


def tweaks_from_advice(advice_set: Any, top: int | None = None) -> tuple[list[str], dict[str, Any]]:
    """The ``top`` recommended tweaks that have a codemod, ranked by projected dollars saved,
    and the codemod options their details carry.

    Example: ``tweaks_from_advice(AdviceSet.from_json("ccprof-report/advice.json"), 3)``
    -> ``(["mixed_precision", "tf32", "dataloader"], {})``.
    """
    have = set(codemod_ids())
    ranked = sorted((a for a in advice_set.advice if a.status == "recommended" and a.tweak in have),
                    key=lambda a: -float(a.projected.usd_saved or 0.0))
    chosen = ranked[:top] if top is not None else ranked
    options: dict[str, Any] = {}
    for a in chosen:
        for key, value in (a.details or {}).items():
            if key in DETAIL_OPTIONS and value is not None:
                options.setdefault(DETAIL_OPTIONS[key], value)
    return [a.tweak for a in chosen], options


def parse_option(text: str) -> tuple[str, Any]:
    """``"accumulation_steps=8"`` -> ("accumulation_steps", 8); lists as ``a,b``; strings as they are."""
    if "=" not in text:
        raise ValueError(f"--option wants key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = [p.strip() for p in raw.split(",")] if "," in raw else raw
    return key, value


def default_output_path(script: str | Path) -> Path:
    """``train.py`` -> ``train_ccprof.py`` beside it."""
    p = Path(script)
    return p.with_name(f"{p.stem}_ccprof{p.suffix or '.py'}")


def backup_path(script: str | Path) -> Path:
    """``train.py.bak``, or ``.bak.1``, ``.bak.2``... when it exists: a backup is never overwritten."""
    p = Path(script)
    candidate = p.with_name(p.name + ".bak")
    n = 0
    while candidate.exists():
        n += 1
        candidate = p.with_name(f"{p.name}.bak.{n}")
    return candidate
