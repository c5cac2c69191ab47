"""The distributed codemod: DDP and a DistributedSampler in a plain loop, Lightning's strategy."""
from __future__ import annotations

from ccprof.applier.codemods import apply_source
from tests.helpers.codemod import HF, LIGHTNING, rewrite


def test_distributed_plain_lightning_and_hf():
    src = """\
    import torch
    from torch.utils.data import DataLoader
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(2):
        for x in loader:
            loss = model(x).sum()
            loss.backward()
            opt.step()
    """
    result = rewrite(src, "distributed")
    out = result.source
    assert "dist.init_process_group(" in out and "DistributedDataParallel(model" in out
    assert "shuffle=not ddp, sampler=DistributedSampler(ds) if ddp else None" in out
    assert "        loader.sampler.set_epoch(epoch)" in out
    assert "torchrun" in result.notes["distributed"]
    assert apply_source(out, ["distributed"]).applied == []
    assert 'strategy="ddp"' in rewrite(LIGHTNING, "distributed").source
    assert "torchrun" in rewrite(HF, "distributed").skipped["distributed"]
