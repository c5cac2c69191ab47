"""The batch_size codemod, before -> after: the Trainer's per-device batch; a script without a
batch size it can find is left alone, with what it looked for."""
from __future__ import annotations

from tests.helpers.codemod import HF, PLAIN, check, rewrite


def test_batch_size_sets_the_trainer_batch_or_says_what_it_looked_for():
    check(HF, HF.replace("per_device_train_batch_size=8,", "per_device_train_batch_size=16,"), "batch_size", batch_size=16)
    result = rewrite(PLAIN, "batch_size", batch_size=16)
    assert result.source == PLAIN and result.applied == []
    assert "`DataLoader(..., batch_size=N)`" in result.skipped["batch_size"]
