"""One fingerprint of a training example: the profiler's sampled duplicate share (rows of the
batches a run draws) and --scan-data (every example of the dataset) hash the same thing, so they
give the same share on the same data. Before, the profiler hashed a batch's input rows and the
scan hashed whole examples: 12 repeated inputs of 48 with labels of their own were 25% to one
and 0% to the other."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ccprof.advisors.data_scan import scan_dataset
from ccprof.artefacts.fingerprint import example_input, fingerprint, row_fingerprints
from ccprof.profiler.session_base import _first_tensor

SCRIPT = """
import torch
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
x = torch.randn(36, 8)
x = torch.cat([x, x[:12]])                  # 12 of 48 inputs repeat earlier ones
y = torch.randn(48, 1)                      # with labels of their own
data = TensorDataset(x, y)
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(30):
    for xb, yb in DataLoader(data, batch_size=48):
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""


def _inputs_repeated_with_new_labels() -> TensorDataset:
    """The script's data: 48 examples, the last 12 inputs repeat the first 12 (25%), labels all new."""
    torch.manual_seed(0)
    x = torch.randn(36, 8)
    return TensorDataset(torch.cat([x, x[:12]]), torch.randn(48, 1))


class _Texts(Dataset):
    """Tokenized texts (one token per character), 3 of 8 repeated: as tensors or as Python ints."""
    TEXTS = ["the cat", "a dog", "the cat", "hello", "a dog", "world", "the cat", "tiny"]

    def __init__(self, as_tensor: bool) -> None:
        self.as_tensor = as_tensor

    def __len__(self) -> int:
        return len(self.TEXTS)

    def __getitem__(self, i: int) -> dict:
        ids = [ord(c) for c in self.TEXTS[i].ljust(8)]          # padded to 8 tokens
        ids = torch.tensor(ids) if self.as_tensor else ids
        return {"labels": ids, "input_ids": ids, "attention_mask": [1] * 8}


def _stack(examples: list[dict]) -> dict:
    """A collator that pads nothing and stacks token ids, as Hugging Face's collators do."""
    return {k: torch.tensor([list(map(int, e[k])) for e in examples]) for k in examples[0]}


def _sampled_share(loader: DataLoader) -> float:
    """What the Session computes from the batches it sees: its input picker, then the rows' fingerprints."""
    fps = [fp for batch in loader for fp in row_fingerprints(_first_tensor(batch))]
    return 1.0 - len(set(fps)) / len(fps)


@pytest.mark.parametrize("data, collate, share", [
    (_inputs_repeated_with_new_labels(), None, 12 / 48),
    (_Texts(as_tensor=True), None, 3 / 8),
    (_Texts(as_tensor=False), _stack, 3 / 8),
], ids=["inputs-repeated-labels-new", "token-tensors", "token-ints"])
def test_sampled_share_and_scan_agree(data, collate, share):
    loader = DataLoader(data, batch_size=5, collate_fn=collate)      # 5: batches that split the repeats
    assert _sampled_share(loader) == pytest.approx(share)
    assert scan_dataset(data)["duplicate_frac"] == pytest.approx(share)


def test_a_row_of_a_batch_fingerprints_as_its_example():
    data = TensorDataset(torch.randn(6, 3, 2).to(torch.bfloat16), torch.arange(6))
    xb, _ = next(iter(DataLoader(data, batch_size=6)))
    assert row_fingerprints(xb) == [fingerprint(data[i]) for i in range(6)]
    assert row_fingerprints(torch.arange(4)) == [fingerprint(torch.tensor(i)) for i in range(4)]
    assert row_fingerprints(torch.tensor(3.0)) == []                       # a 0-d input has no rows
    # the input, not the label: the same x with another y is the same example
    assert fingerprint((torch.ones(3), 0)) == fingerprint((torch.ones(3), 1)) != fingerprint((torch.zeros(3), 0))
    # dtype and shape count: the same bytes read another way are another example
    assert fingerprint(torch.zeros(4, dtype=torch.int32)) != fingerprint(torch.zeros(2, dtype=torch.int64))
    assert fingerprint(torch.zeros(2, 2)) != fingerprint(torch.zeros(4))
    # token ids as Python ints are their int64 tensor; text without arrays is hashed whole
    assert fingerprint({"input_ids": [5, 6]}) == fingerprint(torch.tensor([5, 6]))
    assert fingerprint({"text": "a"}) == fingerprint({"text": "a"}) != fingerprint({"text": "b"})


def test_example_input_picks_the_named_input_first():
    ids, mask = torch.ones(2), torch.zeros(2)
    assert example_input({"attention_mask": mask, "input_ids": ids}) is ids
    assert example_input(([1, 2], (mask, ids))) is mask
    assert example_input({"text": "a"}) is None


@pytest.mark.e2e                # the script in the harness child
def test_the_profilers_fingerprints_are_the_scans(tmp_path):
    """End to end: the run's sampled fingerprints are the scan's, example for example."""
    from ccprof.profiler.runner import run_script

    script = tmp_path / "dups.py"
    script.write_text(SCRIPT)
    r = run_script(script, [], steps=2, warmup=1, timeout_s=120)
    assert r.exit_code == 0, r.message
    fps = r.profile.data.fingerprints
    data = _inputs_repeated_with_new_labels()
    assert fps[:48] == [fingerprint(data[i]) for i in range(48)]          # one unshuffled epoch, in order
    assert 1.0 - len(set(fps[:48])) / 48 == pytest.approx(scan_dataset(data)["duplicate_frac"]) == 0.25
