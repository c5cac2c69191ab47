"""apply_tweak: the registry, the reasons, and the harness's way of calling it mid-run."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ccprof.applier.runtime import NOT_RUNTIME, Applied, RunObjects, apply_tweak, quality_guard, runtime_tweaks
from ccprof.applier.runtime._base import REGISTRY, register
from ccprof.artefacts.tweaks import TWEAKS
from tests.helpers.models import DIM, SEQ, VOCAB, tiny_gpt


def test_every_catalog_tweak_is_runtime_or_says_why():
    assert set(runtime_tweaks()) | set(NOT_RUNTIME) == set(TWEAKS)
    assert not set(runtime_tweaks()) & set(NOT_RUNTIME)
    for t in NOT_RUNTIME:
        r = apply_tweak(t, RunObjects(tiny_gpt(n_layer=1)))
        assert not r.applied and "cannot be applied to a running script" in r.reason


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register("lora")(lambda objs: Applied("lora", True))
    assert REGISTRY["lora"].__name__ == "apply_lora"


def test_unknown_tweak_bad_option_and_bare_module():
    assert "unknown tweak" in apply_tweak("warp_drive", RunObjects(tiny_gpt(n_layer=1))).reason
    r = apply_tweak("checkpointing", RunObjects(tiny_gpt(n_layer=1)), {"nope": 1})
    assert not r.applied and "bad option" in r.reason
    assert apply_tweak("checkpointing", tiny_gpt(n_layer=2)).applied      # a module alone is accepted


def test_an_applier_error_is_reported_not_raised():
    model = tiny_gpt(n_layer=2)
    r = apply_tweak("checkpointing", RunObjects(model), {"container": "blocks.0.qkv"})
    assert not r.applied and "no child blocks" in r.reason
    r = apply_tweak("warm_start", RunObjects(model), {"vectors": "not a tensor"})
    assert not r.applied and "failed: AttributeError" in r.reason


def _run(tweak: str | None, options: dict | None = None, steps: int = 4) -> tuple[list[float], list[Applied]]:
    """The user's unmodified nanoGPT-style loop; a global pre-hook applies the tweak at the
    root's first forward, the way the harness does."""
    torch.manual_seed(0)
    model = tiny_gpt(n_layer=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (32, SEQ), generator=g)
    loader = DataLoader(TensorDataset(x, torch.roll(x, -1, 1)), batch_size=8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    applied: list[Applied] = []

    def pre_hook(module, args):
        if tweak and module is model and not applied:
            applied.append(apply_tweak(tweak, RunObjects(model, [opt], [loader], example_args=args), options))
            # a second attempt (another root call, a retry) must change nothing
            applied.append(apply_tweak(tweak, RunObjects(model, [opt], [loader]), options))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(pre_hook)
    losses = []
    try:
        for xb, yb in loader:
            _, loss = model(xb, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    finally:
        handle.remove()
    return losses, applied


BASELINE: list[float] = []


@pytest.mark.parametrize("tweak, options", [
    ("checkpointing", None), ("mixed_precision", None), ("lora", {"lr": 3e-3}), ("warm_start", {"vectors": torch.randn(VOCAB, DIM)}),
    ("grad_accumulation", None), ("fused_optimizer", None), ("pruning", None), ("distillation", None),
    ("batch_size", {"factor": 0.5}), ("compile", {"backend": "aot_eager"}),
])
def test_harness_style_application_mid_run(tweak, options):
    if not BASELINE:
        BASELINE.extend(_run(None)[0])
    losses, applied = _run(tweak, options)
    first, second = applied
    assert first.applied, first.reason
    assert not second.applied and second.already_applied
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    harmful, why = quality_guard(BASELINE, losses)
    if tweak in ("checkpointing", "grad_accumulation", "fused_optimizer", "compile"):
        assert not harmful, why                    # no quality risk: same losses within float noise
        assert math.isclose(losses[-1], BASELINE[-1], rel_tol=1e-3)
