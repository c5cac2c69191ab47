# Tests (issue 11, misread 3): pretrained means weights were loaded from a checkpoint.
#   --style config      run_clm --config_name: AutoConfig.from_pretrained(dir) + from_config -> scratch
#   --style pretrained  AutoModelForCausalLM.from_pretrained(dir)                          -> pretrained
#   --style state_copy  load_state_dict(other_model.state_dict()) (a DQN target net)       -> scratch
#   --style state_file  load_state_dict(torch.load(file))                                    -> pretrained
import argparse
import os

import torch
from transformers import AutoConfig, AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--style", default="config")
p.add_argument("--dir", required=True)
args = p.parse_args()

torch.manual_seed(0)
if args.style == "pretrained":
    model = AutoModelForCausalLM.from_pretrained(args.dir)
else:
    config = AutoConfig.from_pretrained(args.dir)
    model = AutoModelForCausalLM.from_config(config)
    if args.style == "state_copy":
        other = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(other.state_dict())
    elif args.style == "state_file":
        path = os.path.join(args.dir, "weights.pt")
        torch.save(AutoModelForCausalLM.from_config(config).state_dict(), path)
        model.load_state_dict(torch.load(path))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(20):
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    loss = model(input_ids=ids, labels=ids).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
