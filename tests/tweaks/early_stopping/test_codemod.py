"""The early_stopping codemod: a patience break in a plain loop, the Trainer and Lightning callbacks."""
from __future__ import annotations

from ccprof.applier.codemods import apply_source
from tests.helpers.codemod import HF, LIGHTNING, rewrite


def test_early_stopping_plain_breaks_on_patience():
    src = """\
    import torch
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(10):
        for x in loader:
            loss = model(x).sum()
            loss.backward()
            opt.step()
        val_loss = evaluate(model)
        print(val_loss)
    """
    result = rewrite(src, "early_stopping", patience=2)
    assert "early_stopping_patience = 2" in result.source
    assert "    val_loss = evaluate(model)\n    if float(val_loss) < early_stopping_best:" in result.source
    assert "            break\n    print(val_loss)" in result.source
    assert apply_source(result.source, ["early_stopping"]).applied == []


def test_early_stopping_hf_needs_eval_dataset():
    out = rewrite(HF, "early_stopping").source
    assert "callbacks=[EarlyStoppingCallback(early_stopping_patience=3)]" in out
    assert "load_best_model_at_end=True" in out and 'eval_strategy="epoch"' in out and 'save_strategy="epoch"' in out
    assert "from transformers import EarlyStoppingCallback, LlamaConfig" in out
    no_eval = rewrite(HF.replace(", eval_dataset=val", ""), "early_stopping")
    assert "eval_dataset" in no_eval.skipped["early_stopping"] and no_eval.applied == []
    lit = rewrite(LIGHTNING, "early_stopping").source
    assert 'callbacks=[EarlyStopping(monitor="val_loss", mode="min", patience=3)]' in lit
    assert "from lightning.pytorch.callbacks import EarlyStopping" in lit
