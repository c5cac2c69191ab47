"""A tiny MLP trained by a Lightning Trainer on an in-memory dataset, on the CPU.

Run as a script (``ccprof analyze``) or called in-process with callbacks (tests/integrations)."""
import sys

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def main(root="lightning-tiny-out", max_steps=14, callbacks=None, logger=False):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(256, 32, generator=g), torch.randint(0, 4, (256,), generator=g))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, callbacks=callbacks, logger=logger,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=root, log_every_n_steps=5)
    trainer.fit(Tiny(), DataLoader(data, batch_size=8))
    return trainer


if __name__ == "__main__":
    main(root=sys.argv[1] if len(sys.argv) > 1 else "lightning-tiny-out")
