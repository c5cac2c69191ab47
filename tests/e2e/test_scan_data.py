"""--scan-data: the whole map-style dataset is fingerprinted in the harness after the steps."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import torch
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
x = torch.randn(192, 8)
x = torch.cat([x, x[:64]])              # 64 of 256 rows repeat earlier ones exactly
data = TensorDataset(x, x.sum(1, keepdim=True))
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(20):
    for xb, yb in DataLoader(data, batch_size=16, shuffle=True):
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""


def test_scan_data_replaces_the_sampled_share(tmp_path):
    script = tmp_path / "dups.py"
    script.write_text(SCRIPT)
    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-m", "ccprof", "analyze", str(script), "--quiet", "--steps", "3",
                           "--warmup", "1", "--scan-data", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p = json.loads((out / "profile.json").read_text())
    assert p["data"]["duplicate_scope"] == "dataset"
    assert p["data"]["scan"]["examples"] == 256
    assert p["data"]["duplicate_frac"] == pytest.approx(64 / 256)
    advice = {a["tweak"]: a for a in json.loads((out / "advice.json").read_text())["advice"]}
    assert "25%" in advice["data_curation"]["rationale"]
