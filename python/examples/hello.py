#!/usr/bin/python3
"""Fits y = 2x + 1 with a PyTorch module whose parameters live on ps_server.

    /usr/bin/python3 hello.py --write_job=hello.json   then  ps_server --job=hello.json
    /usr/bin/python3 hello.py HOST:PORT                (a worker; several may join)
"""
import sys

import torch

import fulcrum.torch

model = torch.nn.Linear(1, 1)
x = torch.linspace(-1, 1, 512).unsqueeze(1)
y = 2 * x + 1
if sys.argv[1].startswith("--write_job="):
    job = fulcrum.torch.job_for(model, optimizer={"kind": "SGD", "learning_rate": 0.1},
                                epochs=4, batch_size=16, skip_evaluation=True)
    fulcrum.torch.write_job(sys.argv[1].split("=", 1)[1], job)
else:
    fulcrum.torch.train(model, (x, y), loss_fn=torch.nn.functional.mse_loss,
                        coordinator=sys.argv[1])
    print(f"w={model.weight.item():.3f} b={model.bias.item():.3f}")
