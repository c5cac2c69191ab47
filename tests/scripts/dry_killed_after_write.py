"""Truncates the checkpoint named on its command line (open(path, "wb"), as word_language_model
saves), makes a log beside it, then is killed outright (SIGKILL, as the kernel's out-of-memory
killer would): nothing in this process can put the checkpoint back; ccprof's runner must."""
import os
import signal
import sys

import torch

model = torch.nn.Linear(4, 2)
with open(sys.argv[1], "wb") as f:
    torch.save(model, f)
with open(sys.argv[1] + ".log", "w") as f:
    f.write("loss 1.0\n")
os.kill(os.getpid(), signal.SIGKILL)
