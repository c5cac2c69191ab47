# Helper module imported by uses_argv_and_cwd.py from the same folder (tests that the
# script's folder is first on sys.path).
import torch.nn as nn


def make_model():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
