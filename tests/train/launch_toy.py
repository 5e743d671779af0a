"""Launched by test_train_distributed.py under `accelerate launch` (2 gloo ranks on CPU).

`gather OUT`: checks that gathered global negatives give exactly the single-process gradient
of the full batch, and the block layout of gathered rows. Otherwise: a toy stage-B run with the
trainer (arguments as for train/stage_b.py); every rank writes OUT/rank<r>.json and its final
in-memory weights, so the test can compare the ranks.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

from toy_clap import reference_info_nce  # noqa: E402
from teminal.testing import toy_factory  # noqa: E402

made = []


def factory(spec, device):
    made.append(toy_factory(spec, device))
    return made[-1]


def check_gather(out: Path) -> None:
    from accelerate import Accelerator

    from teminal.train.trainer import gather_blocks

    acc = Accelerator(cpu=True)
    rank, world = acc.process_index, acc.num_processes
    torch.manual_seed(0)
    audio_net, text_net = torch.nn.Linear(6, 4), torch.nn.Linear(5, 4)
    n, blocks = 2, 3
    xa, xt = torch.randn(world, blocks, n, 6), torch.randn(world, blocks, n, 5)

    def loss_of(a, t):
        a, t = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(t, dim=-1)
        return reference_info_nce(a, t, torch.tensor(10.0))

    # reference: one process, the global batch in block layout [block][rank][group]
    ref_a, ref_t = torch.nn.Linear(6, 4), torch.nn.Linear(5, 4)
    ref_a.load_state_dict(audio_net.state_dict()), ref_t.load_state_dict(text_net.state_dict())
    loss_of(ref_a(xa.transpose(0, 1).reshape(-1, 6)),
            ref_t(xt.transpose(0, 1).reshape(-1, 5))).backward()

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.t = audio_net, text_net

        def forward(self, xa, xt):
            return self.a(xa), self.t(xt)

    ddp = acc.prepare(Pair())
    a, t = ddp(xa[rank].reshape(-1, 6), xt[rank].reshape(-1, 5))  # this rank's rows
    ga, gt = gather_blocks(a, blocks), gather_blocks(t, blocks)
    layout_ok = torch.allclose(ga.detach(), ref_a(xa.transpose(0, 1).reshape(-1, 6)).detach())
    # DDP averages the gradients over ranks; the gather's backward summed them over ranks
    acc.backward(loss_of(ga, gt))
    grads_ok = all(torch.allclose(p.grad, q.grad, atol=1e-6) for p, q in
                   zip(list(audio_net.parameters()) + list(text_net.parameters()),
                       list(ref_a.parameters()) + list(ref_t.parameters())))
    (out / f"gather{rank}.json").write_text(json.dumps({"layout": layout_ok, "grads": grads_ok}))
    acc.wait_for_everyone()
    acc.end_training()


def record_batches(path: Path) -> None:
    """Every decoded batch appends {epoch, keys} to `path` (from the loader workers)."""
    from teminal.train.streaming import GroupStream

    collate = GroupStream._collate

    def recording(self, groups):
        batch = collate(self, groups)
        with open(path, "a") as f:
            f.write(json.dumps({"epoch": batch["epoch"], "keys": batch["keys"]}) + "\n")
        return batch

    GroupStream._collate = recording


def train(argv: list[str]) -> None:
    from teminal.train.run_config import resolve
    from teminal.train.trainer import Stage, run

    sizes = []

    def loss(audio, text, scale, n_groups, cfg, positives=None):
        sizes.append([audio.shape[0], n_groups])
        return reference_info_nce(audio, text, scale)

    cfg = resolve("stage_b", argv)
    rank = int(os.environ.get("RANK", 0))
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    record_batches(Path(cfg.out) / f"batches{rank}.jsonl")
    stage = Stage("toy_b", "b", ("forward", "reversed", "overlay"), loss)
    result = run(cfg, stage, factory)
    import torch.distributed as dist  # the process group is gone; files carry the results

    out = Path(cfg.out)
    torch.save(made[0].state_dict(), out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps(
        {"steps": result.steps, "loss_calls": len(sizes), "sizes": sizes,
         "world": result.world_size, "initialized": dist.is_initialized()}))


if __name__ == "__main__":
    if sys.argv[1] == "gather":
        check_gather(Path(sys.argv[2]))
    else:
        train(sys.argv[1:])
