# Tests: a DDP job started by a launcher (torchrun across two "nodes", or ranks given SLURM_*
# variables) with `-m ccprof run` in front of the script. Each rank prints one line per optimizer
# step, so the test sees that every rank trained. --slow-rank R gives rank R a slow input
# pipeline (each batch waits 40 ms, as on a slow disk): DDP then makes the other ranks wait for
# it inside backward, and ccprof must name it the straggler.
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--slow-rank", type=int, default=-1)
opts = parser.parse_args()

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
data = TensorDataset(torch.randn(2048, 16), torch.randn(2048, 1))
sampler = DistributedSampler(data)


def collate(items):
    if rank == opts.slow_rank:
        time.sleep(0.04)        # the slow disk of one rank
    return torch.utils.data.default_collate(items)


loader = DataLoader(data, batch_size=16, sampler=sampler, collate_fn=collate)
model = DDP(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)))
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
step = 0
for x, y in loader:
    loss = F.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    step += 1
    print(f"trained rank={rank} node={os.environ.get('GROUP_RANK', os.environ.get('SLURM_NODEID'))} "
          f"step={step}", flush=True)
dist.destroy_process_group()
