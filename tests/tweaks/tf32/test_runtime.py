"""tf32: an NVIDIA-only switch; on CPU it says why it cannot apply and touches nothing."""
from __future__ import annotations

import pytest
import torch

from ccprof.applier.runtime import RunObjects, apply_tf32
from tests.helpers.models import tiny_gpt


def test_cpu_run_says_why_and_changes_nothing():
    prec = torch.get_float32_matmul_precision()
    r = apply_tf32(RunObjects(tiny_gpt(n_layer=1)))
    assert not r.applied and "this run is on cpu" in r.reason
    assert torch.get_float32_matmul_precision() == prec


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_switches_precision_once():
    prec = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        model = tiny_gpt(n_layer=1).cuda()
        r = apply_tf32(RunObjects(model))
        if torch.cuda.get_device_capability() < (8, 0):
            assert not r.applied and "no TF32" in r.reason
            return
        assert r.applied and torch.get_float32_matmul_precision() == "high"
        assert apply_tf32(RunObjects(model)).already_applied
    finally:
        torch.set_float32_matmul_precision(prec)
