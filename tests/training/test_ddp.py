"""Two CPU processes under DistributedDataParallel (gloo) train the tiny config with GradNorm and
keep identical replicas: same parameters and same GradNorm weights after every run."""
from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from crossi2p_training.config import load_train_config
from crossi2p_training.train import build_model

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, overrides: dict, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(WORLD)})
    import torch.distributed as dist

    from crossi2p_training.train import init_distributed, train

    cfg = load_train_config("tiny", overrides)
    ctx = init_distributed("cpu")
    assert ctx.backend == "gloo" and ctx.world_size == WORLD

    def keep(model, loss):
        torch.save({"params": {n: p.detach().clone() for n, p in model.named_parameters()},
                    "gradnorm": loss.gradnorm.weights.detach().clone()}, f"{out_dir}/rank{rank}.pt")

    try:
        train(cfg, f"{out_dir}/run", ctx=ctx, on_end=keep)
    finally:
        dist.destroy_process_group()


def test_two_gloo_replicas_stay_identical(tmp_path, tiny_overrides, tiny_train_config):
    overrides = {**tiny_overrides, "optim.steps": 3, "optim.batch_size": 1, "log.tensorboard": False}
    torch.manual_seed(tiny_train_config.seed)  # the weights every replica starts from
    init = {n: p.detach().clone() for n, p in build_model(tiny_train_config).named_parameters()}
    mp.spawn(_worker, args=(_free_port(), overrides, str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert r0["params"].keys() == r1["params"].keys()
    for name, p0 in r0["params"].items():
        assert torch.equal(p0, r1["params"][name]), f"replicas differ in {name}"
    assert torch.equal(r0["gradnorm"], r1["gradnorm"])
    assert not torch.allclose(r0["gradnorm"], torch.ones(3)), "GradNorm weights never moved"
    changed = sum(not torch.equal(p, init[n]) for n, p in r0["params"].items())
    assert changed > len(init) // 2, "the replicas did not train"
    # only rank 0 wrote logs and checkpoints
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert len(list((tmp_path / "run").glob("train_log.csv"))) == 1
