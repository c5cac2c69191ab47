# Tests (--dry-run --nproc): an Accelerate loop; Accelerate finds the GPUs through torch.accelerator and wraps the model in DDP.
import torch, torch.nn as nn
from accelerate import Accelerator
acc = Accelerator(mixed_precision="bf16")
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
opt = torch.optim.AdamW(model.parameters())
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4096, 64)), batch_size=16)
model, opt, data = acc.prepare(model, opt, data)
for step, (x,) in enumerate(data):
    loss = model(x).square().mean()
    acc.backward(loss)
    opt.step(); opt.zero_grad()
    if step % 10 == 0: acc.print(step, loss.item(), acc.num_processes, type(model).__name__)
