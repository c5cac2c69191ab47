"""The fused_optimizer codemod, before -> after: ``fused=True`` on every torch.optim optimizer,
however it was imported; the Trainer's ``optim``."""
from __future__ import annotations

from tests.helpers.codemod import ALIASED, HF, check


def test_fused_optimizer_on_aliased_optimizers_and_the_trainer():
    check(ALIASED, ALIASED.replace("lr=1e-3)", "lr=1e-3, fused=True)").replace("lr=0.1)", "lr=0.1, fused=True)"),
          "fused_optimizer")
    check(HF, HF.replace("    per_device_train_batch_size=8,\n",
                         '    per_device_train_batch_size=8,\n    optim="adamw_torch_fused",\n'), "fused_optimizer")


# -- an optimizer the script does not build itself: the refusal names where the run built it (issue 21)
BUILT_ELSEWHERE = """\
import torch
from model import GPT
model = GPT()
optimizer = model.configure_optimizers(weight_decay=0.1)
for x, y in data:
    loss = model(x, y)
    loss.backward()
    optimizer.step()
"""


def test_an_optimizer_built_in_another_module_is_named_with_its_line():
    from ccprof.artefacts.profile import CallSite, Setting
    from tests.helpers.codemod import rewrite

    site = CallSite("optimizer", cls="torch.optim.adamw.AdamW", file="model.py", line=339, role="train",
                    settings=[Setting("fused", None, "**extra_args", "default", "extra_args['fused']")])
    r = rewrite(BUILT_ELSEWHERE, "fused_optimizer", sites=[site])
    why = r.skipped["fused_optimizer"]
    assert r.applied == [] and "model.py:339" in why and "`AdamW(..., **extra_args)`" in why, why
    assert "found none" not in why
    plain = CallSite("optimizer", cls="torch.optim.adamw.AdamW", file="model.py", line=12, role="train")
    why = rewrite(BUILT_ELSEWHERE, "fused_optimizer", sites=[plain]).skipped["fused_optimizer"]
    assert why.startswith("the optimizer that trains is built at model.py:12 (`AdamW(...)`)") and "fused=True" in why
