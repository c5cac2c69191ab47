"""What ``ccprof apply`` needs besides the rewrite: tweaks from an advice file, ``--option``
values, and output/backup paths. No file is written here."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ccprof.applier.codemods import codemod_ids
from ccprof.applier.codemods.mixed_precision import normalize_dtype

__all__ = ["tweaks_from_advice", "parse_option", "default_output_path"]

# per tweak: the Advice.details key its advisor fills -> the codemod option it sets (a dotted
# key reads a nested dict). Per tweak, so that one advisor's figure (grad_accumulation's
# wanted batch) never becomes another codemod's option (batch_size).
TWEAK_OPTIONS: dict[str, dict[str, str]] = {
    "batch_size": {"batch_after": "batch_size"},
    "grad_accumulation": {"accum_steps": "accumulation_steps"},
    "lora": {"rank": "lora_rank", "targets": "lora_targets"},
    "dataloader": {"workers_after": "num_workers"},
    "mixed_precision": {"policy.autocast": "dtype"},
}


def _detail(details: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(details, dict):
            return None
        details = details.get(part)
    return details


def tweaks_from_advice(advice_set: Any, top: int | None = None) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The ``top`` recommended tweaks that have a codemod, ranked by projected dollars saved,
    and, per tweak, the codemod options its advice's details carry (what was projected).

    Example: ``tweaks_from_advice(AdviceSet.from_json("ccprof-report/advice.json"), 3)``
    -> ``(["mixed_precision", "grad_accumulation", "tf32"],
    {"mixed_precision": {"dtype": "bf16"}, "grad_accumulation": {"accumulation_steps": 4}})``.
    """
    have = set(codemod_ids())
    ranked = sorted((a for a in advice_set.advice if a.status == "recommended" and a.tweak in have),
                    key=lambda a: -float(a.projected.usd_saved or 0.0))
    chosen = ranked[:top] if top is not None else ranked
    options: dict[str, dict[str, Any]] = {}
    for a in chosen:
        for key, opt in TWEAK_OPTIONS.get(a.tweak, {}).items():
            value = _detail(a.details or {}, key)
            if value in (None, "", [], 0):
                continue
            if opt == "lora_targets":        # peft matches module-name suffixes: q_proj, c_attn
                value = sorted({str(t).split(".")[-1] for t in value})
            if opt == "dtype":
                value = normalize_dtype(value)
            options.setdefault(a.tweak, {})[opt] = value
    return [a.tweak for a in chosen], options


# every option a codemod reads (``self.opt(...)`` in ccprof/applier/codemods/): its kind and,
# for numbers, the least value that means something
OPTION_KINDS: dict[str, tuple[str, Any]] = {
    "accumulation_steps": ("int", 1), "batch_size": ("int", 1), "num_workers": ("int", 0),
    "patience": ("int", 1), "lora_rank": ("int", 1), "lora_alpha": ("number", 0),
    "lora_dropout": ("fraction", None), "lora_targets": ("names", None), "dtype": ("choice", ("bf16", "fp16")),
    "embeddings_path": ("text", None), "embedding_module": ("text", None),
}


def parse_option(text: str) -> tuple[str, Any]:
    """``"accumulation_steps=8"`` -> ("accumulation_steps", 8); lists as ``a,b``; strings as they are.

    Raises ValueError naming the option for an unknown key or a value of the wrong kind
    (``accumulation_steps=abc``), before anything is rewritten.
    """
    if "=" not in text:
        raise ValueError(f"--option wants KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    if key not in OPTION_KINDS:
        raise ValueError(f"--option {text}: unknown option {key!r}; known: {', '.join(sorted(OPTION_KINDS))}")
    try:
        value: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = [p.strip() for p in raw.split(",")] if "," in raw else raw
    kind, arg = OPTION_KINDS[key]
    bad = None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            bad = "a whole number"
        elif value < arg:
            bad = f"a whole number >= {arg}"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value == value or value <= arg:
            bad = f"a number > {arg}"
    elif kind == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            bad = "a number in [0, 1)"
    elif kind == "names":
        value = [value] if isinstance(value, str) else value
        if not (isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value)):
            bad = "module names, comma-separated (q_proj,v_proj)"
        else:
            value = list(value)
    elif kind == "choice":     # dtype: the spellings normalize_dtype takes (bfloat16, 16-mixed ...)
        try:
            value = normalize_dtype(raw)
        except ValueError:
            bad = " or ".join(arg)
    else:
        value = raw
    if bad is not None:
        raise ValueError(f"--option {text}: {key} must be {bad}, not {raw!r}")
    return key, value


def default_output_path(script: str | Path) -> Path:
    """``train.py`` -> ``train_ccprof.py`` beside it."""
    p = Path(script)
    return p.with_name(f"{p.stem}_ccprof{p.suffix or '.py'}")


