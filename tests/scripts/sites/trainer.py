"""A trainer like minGPT's (mingpt/trainer.py): the loader is built inside run() from its config."""
import torch
import torch.nn.functional as F
from cfgnode import CfgNode as CN
from torch.utils.data import DataLoader


class Trainer:
    @staticmethod
    def get_default_config():
        C = CN()
        C.num_workers = 0
        C.max_iters = 20
        C.batch_size = 64
        C.learning_rate = 3e-4
        return C

    def __init__(self, config, model, train_dataset):
        self.config = config
        self.model = model
        self.train_dataset = train_dataset

    def run(self):
        model, config = self.model, self.config
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
        train_loader = DataLoader(self.train_dataset, shuffle=True, batch_size=config.batch_size,
                                  num_workers=config.num_workers)
        it = 0
        while True:
            for x, y in train_loader:
                loss = F.cross_entropy(model(x), y)
                model.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                it += 1
                if it >= config.max_iters:
                    return
