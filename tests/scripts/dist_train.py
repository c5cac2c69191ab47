# Tests (--dry-run --nproc): a data-parallel loop as torchrun runs it, DDP or FSDP2 by --wrap; gloo on the CPU, nccl where CUDA is.
import argparse
import os

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--wrap", default="ddp", choices=["ddp", "fsdp2"])
p.add_argument("--width", type=int, default=256)
p.add_argument("--steps", type=int, default=50)
args = p.parse_args()
backend = "nccl" if torch.cuda.is_available() else "gloo"
dist.init_process_group(backend)
rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
if device.type == "cuda":
    torch.cuda.set_device(device)
torch.manual_seed(0)
model = nn.Sequential(*[nn.Sequential(nn.Linear(args.width, 4 * args.width), nn.GELU(),
                                      nn.Linear(4 * args.width, args.width)) for _ in range(4)]).to(device)
if args.wrap == "ddp":
    model = nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)
else:
    from torch.distributed.fsdp import fully_shard
    for block in model:
        fully_shard(block)
    fully_shard(model)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(args.steps):
    x = torch.randn(32, args.width, device=device)
    loss = F.mse_loss(model(x), x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if rank == 0 and step % 10 == 0:
        print(f"step {step} loss {loss.item():.4f}")
dist.destroy_process_group()
