"""One home for the vocabulary: the phase names and op classes live in ccprof/artefacts/vocab.py,
and no other module spells its own tuple of them (a grep over the package's syntax trees)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ccprof.artefacts import vocab
from ccprof.artefacts.vocab import (
    COMPUTE_PHASES,
    MATMUL_CLASSES,
    MODEL_PHASES,
    OP_CLASSES,
    OP_PHASES,
    STEP_PHASES,
    STREAM_CLASSES,
    dtype_name,
    normalize_dtype,
    normalize_phase,
)

PACKAGE = Path(vocab.__file__).resolve().parents[1]          # .../ccprof
PHASE_NAMES = set(STEP_PHASES) | {vocab.EVAL_PHASE}


def _literal_strings(node: ast.AST) -> list[str] | None:
    """The strings of a tuple, list or set literal made only of strings (None for anything else)."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]
    return None


def _collections(vocabulary: set[str], least: int, package: Path = PACKAGE) -> list[str]:
    """``file:line: (...)`` for every literal outside artefacts/ holding ``least`` or more names of
    ``vocabulary``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if "artefacts" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = _literal_strings(node)
            if names and len(set(names) & vocabulary) >= least:
                found.append(f"{path.relative_to(package.parent)}:{node.lineno}: {tuple(names)}")
    return found


def test_no_module_outside_artefacts_spells_its_own_phase_names():
    # ("backward", "step", "zero_grad") names methods, one of them a phase: two or more is a list of phases
    assert _collections(PHASE_NAMES, 2) == [], "import the phases from ccprof.artefacts.vocab"


def test_no_module_outside_artefacts_spells_its_own_matmul_or_stream_classes():
    # the kernel model's own small tuples ("conv", "conv_backward") stay; a set as large as a named one does not
    least = min(len(MATMUL_CLASSES), len(STREAM_CLASSES))
    assert _collections(set(OP_CLASSES), least) == [], "import the op classes from ccprof.artefacts.vocab"


def test_the_grep_finds_a_tuple_of_phases(tmp_path):
    """The check itself: a module that spells ("forward", "backward") is caught, artefacts/ is not."""
    pkg = tmp_path / "ccprof"
    for sub in ("profiler", "artefacts"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "x.py").write_text('MINE = ("forward", "backward")\nOK = ("backward", "step")\n')
    assert _collections(PHASE_NAMES, 2, pkg) == ["ccprof/profiler/x.py:1: ('forward', 'backward')"]


def test_the_phase_tuples_nest():
    assert STEP_PHASES[1:] == OP_PHASES
    assert COMPUTE_PHASES == OP_PHASES[:3] and MODEL_PHASES == COMPUTE_PHASES[:2]
    assert normalize_phase("data") == "other" and normalize_phase("backward") == "backward"
    with pytest.raises(ValueError, match="unknown phase 'eval'"):
        normalize_phase("eval")


def test_op_class_returns_only_named_classes():
    from ccprof.hardware import kernels as K
    ops = set()
    for name in dir(K):
        value = getattr(K, name)
        if name.startswith("_") and isinstance(value, frozenset):
            ops |= {o for o in value if isinstance(o, str)}
    ops |= {"_fused_adamw_", "_fused_dropout", "_foreach_add_", "add_", "relu", "gelu", "some_new_op"}
    classes = {K.op_class(f"aten.{o}.default") for o in ops}
    assert classes <= set(OP_CLASSES), classes - set(OP_CLASSES)
    assert MATMUL_CLASSES <= set(OP_CLASSES) and set(STREAM_CLASSES) <= set(OP_CLASSES)


def test_dtype_names():
    torch = pytest.importorskip("torch")
    assert dtype_name(torch.bfloat16) == "bfloat16" == dtype_name("torch.bfloat16") == dtype_name("bfloat16")
    assert normalize_dtype(torch.float16) == "fp16" and normalize_dtype(None) == "bf16"
    with pytest.raises(ValueError):
        normalize_dtype("float32")
