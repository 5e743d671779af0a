"""Weight averaging (SWA): the exported model is the uniform mean of the trainable weights at
every `every`-th optimizer step from step `first` on.

Why: on the small model, held-out order of one stage-B run moves by 0.05-0.10 between
checkpoints 50 steps apart (the run oscillates around a solution); where a run happens to stop
decides much of its score. The mean of the last snapshots sits in the middle of that
oscillation (Izmailov et al., 2018, "Averaging Weights Leads to Wider Optima"); measured in
BENCHMARKS.md ("Weight averaging"). Only trainable parameters are averaged: frozen ones do not
move, and batch-norm statistics are those of the last step (the demo's recipes train no batch
norm; a run that does should recompute them).

The sums are float64 and saved with every checkpoint (average.safetensors: the sums as
tensors, the counters as JSON metadata), so a resumed run averages exactly what an unbroken one
does.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


class WeightAverage:
    def __init__(self, params: list[torch.Tensor], first: int, every: int):
        if first < 1 or every < 1:
            raise ValueError(f"weight averaging needs a first step >= 1 and a period >= 1, got "
                             f"{first} and {every}")
        self.params, self.first, self.every = params, first, every
        self.count, self.steps = 0, []
        self.sums = [torch.zeros_like(p, dtype=torch.float64) for p in params]

    def due(self, step: int) -> bool:
        """Whether the weights after optimizer step `step` (1-based) are a snapshot."""
        return step >= self.first and (step - self.first) % self.every == 0

    @torch.no_grad()
    def add(self, step: int) -> None:
        for s, p in zip(self.sums, self.params):
            s.add_(p.detach().to(torch.float64))
        self.count += 1
        self.steps.append(step)

    @torch.no_grad()
    def copy_to_params(self) -> bool:
        """Put the mean into the parameters (False, nothing changed, when there is no
        snapshot yet)."""
        if not self.count:
            return False
        for s, p in zip(self.sums, self.params):
            p.copy_((s / self.count).to(p.dtype))
        return True

    def state_dict(self) -> dict:
        return {"count": self.count, "steps": list(self.steps), "sums": self.sums,
                "first": self.first, "every": self.every}

    def load_state_dict(self, d: dict) -> None:
        self.count, self.steps = d["count"], list(d["steps"])
        for s, saved in zip(self.sums, d["sums"]):
            s.copy_(saved)

    def save(self, path: Path) -> None:
        save_average_state(path, self.state_dict())

    def load(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {}).get("state", "{}"))
            if len(f.keys()) != len(self.sums) or not {"count", "steps"} <= set(state):
                raise ValueError(f"{path} holds the sums of {len(f.keys())} weights, this run "
                                 f"trains {len(self.sums)}: it belongs to other settings")
            state["sums"] = [f.get_tensor(f"sum.{i}") for i in range(len(self.sums))]
        self.load_state_dict(state)


def save_average_state(path: Path, state: dict) -> None:
    """A WeightAverage's state_dict as safetensors: no pickled objects in a checkpoint."""
    from safetensors.torch import save_file

    counters = {k: v for k, v in state.items() if k != "sums"}
    tmp = path.with_name(path.name + ".tmp")
    save_file({f"sum.{i}": s.detach().contiguous().cpu() for i, s in enumerate(state["sums"])},
              str(tmp), metadata={"state": json.dumps(counters)})
    tmp.replace(path)
