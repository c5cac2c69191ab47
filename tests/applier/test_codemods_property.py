"""Property test: over generated training-loop variants, every codemod's output compiles and a
second application changes nothing."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccprof.applier.codemods import apply_source

IMPORTS = {
    "plain": ("import torch\nimport torch.nn as nn\n", "torch.optim.{opt}", "torch"),
    "alias": ("import torch as T\nfrom torch import nn\n", "T.optim.{opt}", "T"),
    "from_optim": ("import torch\nfrom torch import nn, optim\n", "optim.{opt}", "torch"),
    "from_class": ("import torch\nfrom torch import nn\nfrom torch.optim import {opt}\n", "{opt}", "torch"),
}
TWEAKS = ["mixed_precision", "grad_accumulation", "fused_optimizer", "tf32", "compile", "lora", "warm_start",
          "checkpointing", "early_stopping", "distributed", "dataloader"]


@st.composite
def scripts(draw) -> str:
    style = draw(st.sampled_from(sorted(IMPORTS)))
    imports, opt_ctor, t = IMPORTS[style]
    opt = draw(st.sampled_from(["SGD", "AdamW", "Adam", "RMSprop"]))
    loop = draw(st.sampled_from(["range", "enumerate", "plain", "while"]))
    zero = draw(st.sampled_from(["before", "middle", "after"]))
    two_stmt_loss = draw(st.booleans())
    clip = draw(st.booleans())
    in_function = draw(st.booleans())
    comment = draw(st.booleans())
    val = draw(st.booleans())

    body: list[str] = []
    if zero == "before":
        body.append("optimizer.zero_grad()")
    body.append(f"x = {t}.randn(8, 4)" + ("  # a batch" if comment else ""))
    if two_stmt_loss:
        body += ["out = model(x)", "loss = out.pow(2).mean()"]
    else:
        body.append("loss = model(x).pow(2).mean()")
    if zero == "middle":
        body.append("optimizer.zero_grad()")
    body.append("loss.backward()")
    if clip:
        body.append(f"{t}.nn.utils.clip_grad_norm_(model.parameters(), 1.0)")
    body.append("optimizer.step()")
    if zero == "after":
        body.append("optimizer.zero_grad()")
    if val:
        body.append("val_loss = loss.item()")
    if loop == "range":
        head, pre, tail = "for step in range(4):", [], []
    elif loop == "enumerate":
        head, pre, tail = "for i, batch in enumerate(range(4)):", [], []
    elif loop == "plain":
        head, pre, tail = "for batch in range(4):", [], []
    else:
        head, pre, tail = "while n < 4:", ["n = 0"], ["n += 1"]
    setup = ["model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))",
             f"optimizer = {opt_ctor.format(opt=opt)}(model.parameters(), lr=1e-3)"]
    lines = setup + pre + [head] + ["    " + b for b in body + tail]
    if in_function:
        code = "def main():\n" + "".join("    " + ln + "\n" for ln in lines) + "\n\nmain()\n"
    else:
        code = "".join(ln + "\n" for ln in lines)
    return imports.format(opt=opt) + "\n" + code


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=scripts(), tweaks=st.lists(st.sampled_from(TWEAKS), min_size=1, max_size=4, unique=True),
       dtype=st.sampled_from(["bf16", "fp16"]))
def test_output_compiles_and_second_application_changes_nothing(source, tweaks, dtype):
    compile(source, "<generated>", "exec")
    first = apply_source(source, tweaks, options={"dtype": dtype})
    compile(first.source, "<rewritten>", "exec")
    assert set(first.applied) | set(first.skipped) == set(tweaks)
    if not first.applied:
        assert first.source == source and first.diff == ""
    second = apply_source(first.source, tweaks, options={"dtype": dtype})
    assert second.source == first.source
    assert second.applied == []
