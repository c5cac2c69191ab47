"""The dataloader codemod: workers, pinned memory and persistent workers on each DataLoader."""
from __future__ import annotations

from tests.helpers.codemod import rewrite


def test_dataloader_keywords_guard_a_computed_worker_count():
    src = """\
    from torch.utils.data import DataLoader
    a = DataLoader(ds, batch_size=8, shuffle=True)
    b = DataLoader(ds, num_workers=args.workers)
    """
    out = rewrite(src, "dataloader", num_workers=2).source
    assert "DataLoader(ds, batch_size=8, shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)" in out
    assert "DataLoader(ds, num_workers=args.workers, pin_memory=True, persistent_workers=args.workers > 0)" in out
