"""Everything of a tweak sits in ``ccprof/tweaks/<id>/`` plus its catalog entry; no other module
decides anything by a tweak id; each option has one default that every stage uses."""
from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from dataclasses import fields

import pytest

from ccprof.artefacts.tweaks import TWEAKS
from tests.helpers.paths import ROOT

PKG = ROOT / "ccprof"
CATALOG = ("ccprof/artefacts/tweaks.py", "ccprof/artefacts/tweak_options.py")

# (module, id): why that module names a tweak id. Each is a word the id shares with another
# vocabulary, or a rule between tweaks that no one tweak owns. A new use fails this test;
# so does an exception that no longer holds.
EXCEPTIONS = {
    ("ccprof/advisors/plan.py", "batch_size"): "the plan offers the memory the others free to batch_size again",
    ("ccprof/advisors/plan.py", "checkpointing"): "the plan pairs checkpointing with a larger batch",
    ("ccprof/advisors/plan.py", "mixed_precision"): "checkpointing and autocast both shrink activations; the plan compounds them",
    ("ccprof/advisors/plan.py", "right_size_gpu"): "the plan prices the cheaper GPU last and weighs it against batch_size",
    ("ccprof/cli.py", "tf32"): "a GPU datasheet's TF32 peak (a column of `ccprof gpus`)",
    ("ccprof/hardware/catalog.py", "tf32"): "a GPU datasheet's TF32 peak",
    ("ccprof/hardware/kernels.py", "tf32"): "the TF32 tensor-core unit of the kernel model",
    ("ccprof/hardware/kernels.py", "fused_optimizer"): "a kernel class (one fused optimizer update)",
    ("ccprof/hardware/projection.py", "tf32"): "the TF32 tensor-core unit of the kernel model",
    ("ccprof/hardware/translate.py", "fused_optimizer"): "a kernel class (one fused optimizer update)",
    ("ccprof/artefacts/vocab.py", "fused_optimizer"): "a kernel class (one fused optimizer update)",
    ("ccprof/hardware/inputs.py", "fused_optimizer"): "a fact of the script (fused= True only on CUDA) the GPU's optimizer is built with",
    ("ccprof/profiler/hooks.py", "compile"): "torch.compile, the function the profiler counts calls of",
    ("ccprof/profiler/session_base.py", "batch_size"): "DataLoader.batch_size, an attribute of torch's",
    ("ccprof/profiler/session_data.py", "batch_size"): "DataLoader.batch_size, an attribute of torch's",
    ("ccprof/profiler/sites.py", "batch_size"): "DataLoader's keyword `batch_size=`, whose value the run records the source of",
    ("ccprof/profiler/sites.py", "dataloader"): "CallSite.what: the call that built a DataLoader",
    ("ccprof/profiler/sites.py", "mixed_precision"): "Accelerator's keyword `mixed_precision=`, whose value the run records the source of",
    ("ccprof/profiler/session_loads.py", "checkpointing"): "a fact of the script (it checkpoints), as the run saw it",
    ("ccprof/profiler/session_loads.py", "compile"): "a fact of the script (it compiles), as the run saw it",
    ("ccprof/profiler/static.py", "checkpointing"): "a fact of the script (it checkpoints)",
    ("ccprof/profiler/static.py", "compile"): "a fact of the script (it compiles)",
    ("ccprof/script/applied.py", "checkpointing"): "a fact of the script (it checkpoints)",
    ("ccprof/script/applied.py", "compile"): "a fact of the script (it compiles)",
    ("ccprof/script/applied.py", "dataloader"): "a fact of the script (its DataLoaders have workers)",
    ("ccprof/script/applied.py", "early_stopping"): "a fact of the script (it stops early)",
    ("ccprof/script/applied.py", "fused_optimizer"): "a fact of the script (its optimizers are fused)",
    ("ccprof/script/applied.py", "mixed_precision"): "Accelerator's keyword `mixed_precision=`",
    ("ccprof/script/applied.py", "tf32"): "a fact of the script (it allows TF32)",
    ("ccprof/script/names.py", "checkpointing"): "the names the script reader matches for checkpointing",
    ("ccprof/script/names.py", "compile"): "the names the script reader matches for torch.compile",
    ("ccprof/script/names.py", "dataloader"): "the names the script reader matches for DataLoader",
    ("ccprof/script/names.py", "early_stopping"): "the names the script reader matches for early stopping",
}


def _id_literals() -> set[tuple[str, str]]:
    """(module, id) for every string literal equal to a tweak id, docstrings left out, in the
    package outside the tweak folders and the catalog."""
    found = set()
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("ccprof/tweaks/") or rel in CATALOG:
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in TWEAKS
                    and id(node) not in docs):
                found.add((rel, node.value))
    return found


def test_no_module_outside_the_tweak_folders_decides_by_a_tweak_id():
    found = _id_literals()
    new = sorted(found - set(EXCEPTIONS))
    gone = sorted(set(EXCEPTIONS) - found)
    assert not new, f"tweak ids named outside ccprof/tweaks/ and the catalog (move the rule into the tweak or the catalog): {new}"
    assert not gone, f"exceptions that no longer hold (remove them): {gone}"


def test_each_id_has_its_folder_and_the_stages_the_catalog_gives():
    folders = {p.name for p in (PKG / "tweaks").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(TWEAKS)
    for tweak, info in TWEAKS.items():
        d = PKG / "tweaks" / tweak
        assert (d / "advise.py").exists() and (d / "README.md").exists(), tweak
        assert (d / "runtime.py").exists() == info.runtime, tweak
        assert (d / "codemod.py").exists() == info.codemod, tweak


def test_no_engine_imports_a_tweak_by_name():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("ccprof/tweaks/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ccprof.tweaks"):
                pytest.fail(f"{rel}:{node.lineno} imports {node.module}: engines load tweaks by catalog id")
            if isinstance(node, ast.Import) and any(a.name.startswith("ccprof.tweaks") for a in node.names):
                pytest.fail(f"{rel}:{node.lineno} imports a tweak module: engines load tweaks by catalog id")


def test_the_tweak_readmes_are_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "tweak_readmes.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _runtime_param(field) -> str | None:
    name = field.metadata.get("runtime", True)
    return None if name is False else (field.name if name is True else name)


@pytest.mark.parametrize("tweak", [t for t, i in TWEAKS.items() if i.runtime])
def test_each_option_has_one_default_that_the_runtime_applier_uses(tweak):
    from ccprof.applier.runtime import REGISTRY
    sig = inspect.signature(inspect.unwrap(REGISTRY[tweak]))
    opts = TWEAKS[tweak].options()
    for f in fields(opts):
        param = _runtime_param(f)
        if param is None:
            continue
        assert param in sig.parameters, f"{tweak}: the runtime applier takes no {param!r} for option {f.name!r}"
        d = f.metadata.get("default")
        given = sig.parameters[param].default
        if d is None or callable(d):
            # decided from the run, or computed from the other options: the applier leaves it unset
            assert given is None, f"{tweak}.{f.name}: the applier's own default {given!r}; the catalog's is {d!r}"
        else:
            assert given == d, f"{tweak}.{f.name}: the applier defaults to {given!r}, the catalog to {d!r}"
    # and what a --verify re-run passes is the catalog's defaults, for every option with one
    kwargs = opts.runtime_kwargs()
    for f in fields(opts):
        d = f.metadata.get("default")
        if d is not None and _runtime_param(f):
            assert kwargs[_runtime_param(f)] == opts.value(f.name)


@pytest.mark.parametrize("tweak", [t for t, i in TWEAKS.items() if i.codemod])
def test_codemods_read_options_only_through_the_catalog(tweak):
    """A codemod asks ``self.opt(name)``: the value set, else the catalog's default; no fallback of its own."""
    tree = ast.parse((PKG / "tweaks" / tweak / "codemod.py").read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "opt"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"):
            assert len(node.args) == 1 and not node.keywords, f"{tweak} codemod line {node.lineno}: a default of its own"
            name = node.args[0].value
            assert name in {f.name for f in fields(TWEAKS[tweak].options)}, f"{tweak}: no option {name!r}"
    importlib.import_module(f"ccprof.tweaks.{tweak}.codemod")


def test_lora_alpha_is_two_times_the_rank_in_every_stage():
    from ccprof.artefacts.tweaks import LoraOptions
    assert LoraOptions().value("alpha") == 16 and LoraOptions(rank=4).value("alpha") == 8
    assert LoraOptions(rank=4).runtime_kwargs() == {"r": 4, "alpha": 8, "dropout": 0.0}
    assert LoraOptions(rank=4, alpha=4).runtime_kwargs()["alpha"] == 4


def test_the_facts_that_mean_a_tweak_is_there_are_the_catalogs():
    """apply's "already applied" and analyze's "turn on what you have" read the same facts."""
    from ccprof.applier.codemods import _base
    from ccprof.script.applied import FACTS

    for tweak, info in TWEAKS.items():
        assert set(info.facts) <= set(FACTS), tweak
    assert "FACTS" not in vars(_base.TweakCodemod)          # codemods read the catalog's, not a copy
