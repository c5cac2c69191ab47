"""Sites test: a minGPT-style config object (config.trainer.batch_size) overridden with
--trainer.batch_size=16; the loader is built inside Trainer.run in trainer.py."""
import sys

import torch
import torch.nn as nn
from cfgnode import CfgNode as CN
from data import make_dataset
from trainer import Trainer


def get_config():
    C = CN()
    C.trainer = Trainer.get_default_config()
    C.trainer.learning_rate = 1e-3
    return C


config = get_config()
config.merge_from_args(sys.argv[1:])
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
trainer = Trainer(config.trainer, model, make_dataset(512))
trainer.run()
