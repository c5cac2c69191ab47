"""ccprof's optional parts and the packages each needs (pyproject.toml's extras). The core install
profiles, projects, advises, reports and rewrites; an extra adds one path:

    hf           transformers, peft      --verify with LoRA (peft), Hugging Face models' own paths
    crosscheck   fvcore                  the second FLOP count beside torch's (profile.flops.fvcore_forward)
    dedup        datasketch              --scan-data (near-duplicate examples by MinHash)
    tensorboard  tensorboard             --history of a TensorBoard log folder
    lightning    lightning               ccprof.integrations.lightning.CcprofCallback

A path that needs a missing extra says so in one line with the install command
(a ``CcprofError``, exit 2, before anything runs) or notes it where the path is optional.
"""
from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "missing", "install_hint", "require"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "hf": ("transformers", "peft"),
    "crosscheck": ("fvcore",),
    "dedup": ("datasketch",),
    "tensorboard": ("tensorboard",),
    "lightning": ("lightning",),
}


def missing(extra: str) -> list[str]:
    """The packages of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def install_hint(extra: str) -> str:
    """``pip install 'ccprof[dedup]'``."""
    return f"pip install 'ccprof[{extra}]'"


def require(extra: str, what: str) -> None:
    """A CcprofError (exit 2) naming ``what`` needs, and how to install it, when ``extra`` is missing.

    Example: ``require("dedup", "--scan-data")`` -> ``ccprof: --scan-data needs datasketch, which is
    not installed: pip install 'ccprof[dedup]'``.
    """
    gone = missing(extra)
    if gone:
        from ccprof.exit_codes import CcprofError  # here: keeps this module free of imports at load

        raise CcprofError(f"{what} needs {', '.join(gone)}, which {'is' if len(gone) == 1 else 'are'} not "
                         f"installed: {install_hint(extra)}")
