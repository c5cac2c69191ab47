"""How the harness tells a failure in the user's terms: their frames of a traceback (ccprof's and
runpy's left out), the line to blame in their script, whether ccprof's own hooks raised, and
whether it was an out-of-memory error.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import torch

_CCPROF_DIR = str(Path(__file__).resolve().parents[1])
_HIDDEN = (_CCPROF_DIR, os.path.dirname(__import__("runpy").__file__) + os.sep + "runpy.py")
# the harness's own files: a traceback ending in one is not a fault of ccprof's hooks
_HARNESS_FILES = ("harness.py", "_harness_faults.py", "_harness_io.py")


def user_frames(tb: Any) -> list[traceback.FrameSummary]:
    """The traceback's frames without ccprof's own (and runpy's)."""
    frames = traceback.extract_tb(tb)
    return [f for f in frames if not _resolved(f.filename).startswith(_HIDDEN)
            and not f.filename.startswith("<frozen runpy")]


def _resolved(filename: str) -> str:
    try:
        return str(Path(filename).resolve())
    except OSError:        # the script removed its cwd: a relative name cannot be resolved
        return filename


def format_user_traceback(exc: BaseException) -> str:
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(user_frames(exc.__traceback__))
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def blame_frame(exc: BaseException, script: str) -> tuple[str | None, int | None]:
    """Where in the user's code it happened: the deepest frame in the script's folder."""
    # "<frozen os>" and "<string>" are not files (and would resolve into the cwd)
    frames = [f for f in user_frames(exc.__traceback__) if not f.filename.startswith("<")]
    folder = str(Path(_resolved(script)).parent)
    mine = [f for f in frames if _resolved(f.filename).startswith(folder + os.sep)]
    pick = (mine or frames or [None])[-1]
    return (pick.filename, pick.lineno) if pick else (None, None)


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, even when the exception's own ``__str__`` raises or returns nothing."""
    try:
        text = str(exc)
    except Exception as inner:
        text = f"<str() of the exception failed: {type(inner).__name__}>"
    return text


def first_line(exc: BaseException) -> str:
    lines = safe_str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


def _ccprof_fault(exc: BaseException) -> str | None:
    """``hooks.py:502`` when the innermost frame of the traceback is ccprof's own code (its
    hooks raised, not the user's code or torch), else None."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    path = _resolved(last.filename)
    if path.startswith(_CCPROF_DIR + os.sep) and not path.endswith(tuple(os.sep + f for f in _HARNESS_FILES)):
        return f"{os.path.relpath(path, os.path.dirname(_CCPROF_DIR))}:{last.lineno}"
    return None


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    text = safe_str(exc).lower()
    return isinstance(exc, MemoryError) or isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text)
