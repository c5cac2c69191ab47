"""A Lightning Trainer with mixed precision, accumulation and DDP."""
import lightning as L
import torch


class Lit(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 1)

    def training_step(self, batch, idx):
        return self.net(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


trainer = L.Trainer(precision="bf16-mixed", accumulate_grad_batches=2, strategy="ddp", max_steps=4)
trainer.fit(Lit(), torch.utils.data.DataLoader(torch.randn(32, 8), batch_size=8))
