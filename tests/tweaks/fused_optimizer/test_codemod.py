"""The fused_optimizer codemod, before -> after: ``fused=True`` on every torch.optim optimizer,
however it was imported; the Trainer's ``optim``."""
from __future__ import annotations

from tests.helpers.codemod import ALIASED, HF, check


def test_fused_optimizer_on_aliased_optimizers_and_the_trainer():
    check(ALIASED, ALIASED.replace("lr=1e-3)", "lr=1e-3, fused=True)").replace("lr=0.1)", "lr=0.1, fused=True)"),
          "fused_optimizer")
    check(HF, HF.replace("    per_device_train_batch_size=8,\n",
                         '    per_device_train_batch_size=8,\n    optim="adamw_torch_fused",\n'), "fused_optimizer")
