#!/usr/bin/python3
"""Embeddings without a vocabulary: users and items by 64-bit ids."""
import sys

import torch

import fulcrum.torch


class TwoTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        adagrad = {"kind": "ADAGRAD", "learning_rate": 0.1}
        self.user = fulcrum.torch.Embedding(8, optimizer=adagrad)  # a sparse table "user"
        self.items = fulcrum.torch.EmbeddingBag(8, mode="mean", optimizer=adagrad)  # "items"
        self.top = torch.nn.Linear(16, 1)  # dense tensors "top.weight", "top.bias"

    def forward(self, user_ids, item_bags):
        return self.top(torch.cat([self.user(user_ids), self.items(item_bags)], 1)).squeeze(1)


torch.manual_seed(0)
user_ids, item_ids = torch.randint(-2**63, 2**63 - 1, (2, 300))  # any int64
taste, appeal = torch.randn(300), torch.randn(300)  # the hidden truth
u, bags = torch.randint(0, 300, (4096,)), torch.randint(0, 300, (4096, 3))
clicks = (taste[u] + appeal[bags].mean(1) > 0).float()
model = TwoTower()
if sys.argv[1].startswith("--write_job="):
    job = fulcrum.torch.job_for(model, optimizer={"kind": "ADAM", "learning_rate": 0.01},
                                epochs=8, batch_size=64)
    fulcrum.torch.write_job(sys.argv[1].split("=", 1)[1], job)
else:
    fulcrum.torch.train(model, ((user_ids[u], item_ids[bags]), clicks),
                        loss_fn=torch.nn.functional.binary_cross_entropy_with_logits,
                        evaluate=lambda m: fulcrum.torch.binary_metrics(
                            m, (user_ids[u], item_ids[bags]), clicks),
                        coordinator=sys.argv[1])
