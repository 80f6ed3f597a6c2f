#!/usr/bin/env python3
"""Prints torch.optim's parameters after 3 steps on fixed gradients, for
tests/optim.rs (SGD with momentum, dampening 0, weight decay, nesterov; Adam with
weight decay). Usage: optim_reference.py > optim_reference.json"""
import json
import torch

p0 = [0.5, -1.25, 2.0, 0.0, -0.03125]
grads = [[0.1, -0.2, 0.3, 0.0, 1.5], [-0.4, 0.25, 0.05, 0.001, -2.0], [0.2, 0.2, -0.1, 0.0, 0.5]]
configs = {
    "sgd_momentum_wd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.1, momentum=0.8, nesterov=True)),
    "adam_wd": (torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adam_default": (torch.optim.Adam, dict(lr=0.001)),
}
out = {"p0": p0, "grads": grads}
for name, (cls, kw) in configs.items():
    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float32))
    opt = cls([p], **kw)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
    out[name] = {"kwargs": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}, "after": p.detach().tolist()}
print(json.dumps(out, indent=1))
