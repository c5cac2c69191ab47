"""The grad_accumulation codemod, before -> after: the step and zero_grad under a modulo, the loss
scaled, the Trainer and Lightning keywords, and "already applied"."""
from __future__ import annotations

from tests.helpers.codemod import HF, LIGHTNING, PLAIN, check, rewrite


def test_grad_accumulation_plain_moves_step_and_zero_grad_under_modulo():
    after = PLAIN.replace("import torch.nn as nn\n", "import torch.nn as nn\n\n"
                          "gradient_accumulation_steps = 8  # micro-batches per optimizer step\n").replace(
        "    optimizer.zero_grad()\n    loss.backward()\n    optimizer.step()\n",
        "    (loss / gradient_accumulation_steps).backward()\n"
        "    if (step + 1) % gradient_accumulation_steps == 0:\n"
        "        optimizer.step()\n        optimizer.zero_grad()\n")
    check(PLAIN, after, "grad_accumulation", accumulation_steps=8)


def test_grad_accumulation_counts_micro_batches_without_a_loop_index():
    src = """\
    import torch
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(2):
        for x in loader:
            loss = model(x).sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
    """
    out = rewrite(src, "grad_accumulation").source
    assert "micro_step = 0\nfor epoch in range(2):" in out
    assert "        micro_step += 1\n        if micro_step % gradient_accumulation_steps == 0:" in out


def test_grad_accumulation_already_and_keywords():
    src = PLAIN.replace("    optimizer.step()\n", "    if (step + 1) % 4 == 0:\n        optimizer.step()\n")
    assert rewrite(src, "grad_accumulation").already_applied == ["grad_accumulation"]
    assert "    gradient_accumulation_steps=4,\n)" in rewrite(HF, "grad_accumulation").source
    assert "accumulate_grad_batches=4" in rewrite(LIGHTNING, "grad_accumulation").source


def test_grad_accumulation_after_fp16_scales_inside_scaler():
    out = rewrite(PLAIN, "mixed_precision", "grad_accumulation", dtype="fp16").source
    assert "scaler.scale(loss / gradient_accumulation_steps).backward()" in out
    assert "        scaler.step(optimizer)\n        scaler.update()\n        optimizer.zero_grad()\n" in out
