# Tests (--dry-run --nproc, pipelines): a pipeline-parallel loop as torchrun runs it; the script splits its own
# model into world // dp stages (an embedding in the first, a head and the loss in the last, so stages differ),
# torch.distributed.pipelining's PipelineStage and a schedule chosen by --schedule; gloo on the CPU, nccl on CUDA.
import argparse
import os
import signal

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B

p = argparse.ArgumentParser()
# zb: ScheduleInterleavedZeroBubble (ZB-H1 on looped stages); zbv: ScheduleZBVZeroBubble (two stages a rank, a V)
p.add_argument("--schedule", default="1f1b", choices=["gpipe", "1f1b", "interleaved", "zb", "zbv"])
p.add_argument("--microbatches", type=int, default=4)
p.add_argument("--dp", type=int, default=1)             # data-parallel replicas of the whole pipeline
p.add_argument("--width", type=int, default=128)
p.add_argument("--layers", type=int, default=8)
p.add_argument("--vocab", type=int, default=512)
p.add_argument("--seq", type=int, default=32)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--chdir", default=None)                # a folder (relative) the script works in, as some do
p.add_argument("--log", default=None)                  # a file every rank appends its steps to
p.add_argument("--fail-rank", type=int, default=None)  # this rank raises before its first step (a stage failing)
# after this step's log line every rank prints "rank R holding pid P" and waits for a signal (a stop from outside)
p.add_argument("--hold-at", type=int, default=None)
args = p.parse_args()
if args.chdir:
    os.chdir(args.chdir)
backend = "nccl" if torch.cuda.is_available() else "gloo"
dist.init_process_group(backend)
rank, world, local = dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
if device.type == "cuda":
    torch.cuda.set_device(device)
pp = world // args.dp                                   # ranks per pipeline; ranks [r*pp, (r+1)*pp) form replica r
replica, pp_rank = rank // pp, rank % pp
pp_group = dist.new_group(list(range(replica * pp, (replica + 1) * pp)))
for r in range(args.dp):                                # every rank creates every group, in the same order
    if r != replica:
        dist.new_group(list(range(r * pp, (r + 1) * pp)))
chunks = 2 if args.schedule in ("interleaved", "zb", "zbv") else 1     # stages per rank (interleaved: looped)
num_stages = pp * chunks


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm, self.up, self.down = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        return x + self.down(F.gelu(self.up(self.norm(x))))


class Stage(nn.Module):
    """Layers [lo, hi) of the model; the first stage embeds tokens, the last one projects to the vocabulary."""

    def __init__(self, index: int):
        super().__init__()
        per = args.layers // num_stages
        self.embed = nn.Embedding(args.vocab, args.width) if index == 0 else None
        self.blocks = nn.ModuleList(Block(args.width) for _ in range(per))
        self.head = nn.Linear(args.width, args.vocab) if index == num_stages - 1 else None

    def forward(self, x):                               # (B, T) tokens on the first stage, (B, T, C) after
        if self.embed is not None:
            x = self.embed(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x) if self.head is not None else x


def loss_fn(logits, targets):                           # (B, T, V), (B, T)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


torch.manual_seed(0)
indices = [pp_rank + k * pp for k in range(chunks)]     # looped placement: rank r holds stages r, r + pp, ...
if args.schedule == "zbv":                              # V placement: rank r holds stages r and 2 pp - 1 - r
    indices = [pp_rank, num_stages - 1 - pp_rank]
mods = [Stage(i).to(device) for i in indices]
stages = [PipelineStage(m, i, num_stages, device, group=pp_group) for m, i in zip(mods, indices)]
if args.schedule == "gpipe":
    schedule = ScheduleGPipe(stages[0], n_microbatches=args.microbatches, loss_fn=loss_fn)
elif args.schedule == "1f1b":
    schedule = Schedule1F1B(stages[0], n_microbatches=args.microbatches, loss_fn=loss_fn)
elif args.schedule == "interleaved":
    schedule = ScheduleInterleaved1F1B(stages, n_microbatches=args.microbatches, loss_fn=loss_fn)
elif args.schedule == "zb":                             # the zero-bubble schedules: not in every torch (imported here)
    from torch.distributed.pipelining import ScheduleInterleavedZeroBubble
    schedule = ScheduleInterleavedZeroBubble(stages, n_microbatches=args.microbatches, loss_fn=loss_fn)
else:
    from torch.distributed.pipelining import ScheduleZBVZeroBubble
    schedule = ScheduleZBVZeroBubble(stages, n_microbatches=args.microbatches, loss_fn=loss_fn)
if rank == args.fail_rank:
    raise RuntimeError(f"rank {rank} failed before its first step")
opt = torch.optim.AdamW([q for m in mods for q in m.parameters()], lr=1e-3)
for step in range(args.steps):
    g = torch.Generator().manual_seed(step)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=g).to(device)
    x, y = tokens[:, :-1], tokens[:, 1:]
    opt.zero_grad(set_to_none=True)
    losses: list = []
    first, last = 0 in indices, num_stages - 1 in indices     # the V puts both on rank 0
    schedule.step(*((x,) if first else ()), target=y if last else None, losses=losses if last else None)
    opt.step()
    if args.log:
        with open(args.log, "a") as fh:
            fh.write(f"rank {rank} step {step}\n")
    if step == args.hold_at:
        print(f"rank {rank} holding pid {os.getpid()}", flush=True)
        while True:
            signal.pause()
    if losses and step % 5 == 0:
        print(f"rank {rank} step {step} loss {torch.stack(losses).mean().item():.4f}")
dist.destroy_process_group()
