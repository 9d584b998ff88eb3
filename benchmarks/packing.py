"""GPU packing: generations per second of 4 trial processes sharing one GPU against 1
alone (what four trials with resources.gpu = 0.25 do: Ray starts them as processes that
share the card, each with a quarter of the node's cores).

Used by ddpm_generation.py and model_generation.py; run as a script it is one worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def run_trial(spec_name: str, overrides: list[str], generations: int, device: str) -> dict:
    """Runs `generations` of a shipped spec with overrides; start and end times."""
    from mad_core.loop import SelfConsumingLoop
    from mad_core.spec import resolve_spec
    from mad_core.spec_files import apply_overrides, find_spec_file, load_yaml_mapping

    raw = load_yaml_mapping(find_spec_file(spec_name))
    spec = resolve_spec(apply_overrides(raw, [*overrides, f"generations={generations}"]))
    started = time.time()
    records = list(SelfConsumingLoop(spec, device=device))
    return {"start": started, "end": time.time(), "generations": generations,
            "seconds": [round(r["seconds"], 3) for r in records]}


def packing(spec_name: str, overrides: list[str], generations: int, device: str,
            report) -> float:
    """Runs the trial in 1 process, then in 4 at once; reports both and returns the ratio
    of generations per second, 4 against 1."""
    throughput = {}
    for processes in (1, 4):
        command = [sys.executable, __file__, spec_name, str(generations), device, *overrides]
        # A quarter of the node's cores each, as Ray gives a trial asking cpu: 4 of 16.
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 4) // 4))}
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
                   for _ in range(processes)]
        runs = [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in workers]
        wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
        throughput[processes] = processes * generations / wall
        report(benchmark="gpu_packing", trial=spec_name, device=device_name(device),
               processes=processes, generations_each=generations, wall_s=round(wall, 2),
               generations_per_s=round(throughput[processes], 4))
    ratio = throughput[4] / throughput[1]
    report(benchmark="gpu_packing_ratio", trial=spec_name, ratio_4_vs_1=round(ratio, 2), target=3.0)
    return ratio


if __name__ == "__main__":
    name, generations, device, *rest = sys.argv[1:]
    print(json.dumps(run_trial(name, rest, int(generations), device)))
