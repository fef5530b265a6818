"""A worker launched by torchrun in tests/twogpu/test_replicas.py: a tiny two-tower model trained
data-parallel with twogpu.replicas. Usage: worker.py OUT_DIR STEPS [FAIL_RANK]."""

import sys
from pathlib import Path

import torch
from torch import nn

from twogpu import exchange
from twogpu.replicas import agree_any, init_from_env, replica_devices, shutdown, unwrap, wrap


class ToyTwoTower(nn.Module):
    def __init__(self, devices):
        super().__init__()
        self.devices = devices
        self.a1, self.b1 = nn.Linear(6, 4).to(devices[0]), nn.Linear(6, 4).to(devices[1])
        self.a2 = nn.Linear(8, 3).to(devices[0])

    def forward(self, x):
        ha, hb = torch.relu(self.a1(x.to(self.devices[0]))), torch.relu(self.b1(x.to(self.devices[1])))
        ha, _ = exchange(ha, hb, self.devices, site="fc")
        return self.a2(ha)


def global_batch(step, world_size, per_rank=2):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(world_size * per_rank, 6, generator=g)
    y = torch.randint(0, 3, (world_size * per_rank,), generator=g)
    return x, y


def main():
    out, steps = Path(sys.argv[1]), int(sys.argv[2])
    fail_rank = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    world = init_from_env(timeout_s=60)
    devices = replica_devices(world, "auto").pair
    torch.manual_seed(world.rank)  # different init per rank: DDP must broadcast rank 0's
    model = wrap(ToyTwoTower(devices), world)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(steps):
        if step == 2 and world.rank == fail_rank:
            raise RuntimeError(f"rank {world.rank} fails on purpose at step {step}")
        x, y = global_batch(step, world.world_size)
        mine = slice(2 * world.rank, 2 * world.rank + 2)
        loss = nn.functional.cross_entropy(model(x[mine]), y[mine])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert agree_any(world.rank == 1, world) == (world.world_size > 1)
    torch.save({k: v.cpu() for k, v in unwrap(model).state_dict().items()}, out / f"rank{world.rank}.pt")
    return world


if __name__ == "__main__":
    shutdown(main())  # after main() returned: the DDP model is released first
