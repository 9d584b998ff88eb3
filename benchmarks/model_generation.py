"""Seconds per generation of each neural model at its shipped single-trial spec, and GPU
packing (4 trials at gpu = 0.25 against 1 alone).

    python benchmarks/model_generation.py                  # CPU, every spec in SPECS
    python benchmarks/model_generation.py --gpu            # CUDA, then packing 4 vs 1
    python benchmarks/model_generation.py --specs flow_rosenbrock_fully_synthetic

Each spec runs GENERATIONS generations of its own loop (G1 trains on real data, G2 on
the first generation's samples) through ``SelfConsumingLoop``, as `mad run` does; the
records' ``seconds`` (train + sample the next training set + metrics + grid) are printed
per generation with the ratio to the 60 s a CPU-sized spec is meant to fit in. With
--gpu the same specs run on CUDA and the ratio printed is the packing one (4 processes
sharing the card against 1 alone, measured in the same run). Image-folder specs get a
stand-in folder (digits upscaled to RGB, written to a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.packing import device_name, packing, run_trial  # noqa: E402

CPU_TARGET_S = 60.0
GENERATIONS = 2
SPECS = ("wgan_gmm_grid_fully_synthetic", "wgan_digits_fully_synthetic",
         "flow_rosenbrock_fully_synthetic", "stylegan2_digits_fully_synthetic")
GPU_SPECS = (*SPECS, "stylegan2_folder_fully_synthetic")
RESULTS: list[dict] = []


def report(**fields) -> None:
    RESULTS.append(fields)
    print(json.dumps(fields), flush=True)


def write_folder_stand_in(root: Path, count: int, resolution: int) -> None:
    """`count` RGB PNGs: the 8x8 digits upscaled and tinted, a stand-in for thumbnails
    (the timing depends on the shapes only)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits().images / 16.0
    tints = np.random.default_rng(0).uniform(0.3, 1.0, size=(count, 3))
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        grey = digits[index % len(digits)]
        rgb = (grey[..., None] * tints[index] * 255).astype(np.uint8)
        Image.fromarray(rgb).resize((resolution, resolution), Image.Resampling.BILINEAR).save(
            root / f"{index:06d}.png")


def overrides_for(spec_name: str, quick: bool, scratch: Path, changes: list[str]) -> list[str]:
    overrides = list(changes)
    if "folder" in spec_name:
        folder = scratch / "folder"
        if not folder.exists():
            write_folder_stand_in(folder, 600 if quick else 12_000, 64)
        overrides.append(f"data.root={folder}")
    if quick:
        overrides += ["model_options.steps=5", "metrics.n_eval=100", "n_init=200", "n_syn=200"]
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="run on CUDA and measure packing")
    parser.add_argument("--device", default="cuda", help="with --gpu (cpu: check the script)")
    parser.add_argument("--specs", nargs="+", help="shipped spec names (default: all)")
    parser.add_argument("--generations", type=int, default=GENERATIONS)
    parser.add_argument("--packing", nargs="*", default=["stylegan2_digits_fully_synthetic"],
                        help="with --gpu: specs packed 4 to a device")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="spec overrides for every spec (model_options.steps=1000: a "
                             "shorter generation, to be scaled by the step count)")
    parser.add_argument("--out", type=Path, help="write every measurement as JSON here")
    args = parser.parse_args()
    device = args.device if args.gpu else "cpu"
    scratch = Path(tempfile.mkdtemp(prefix="model_generation"))
    for name in args.specs or (GPU_SPECS if args.gpu else SPECS):
        run = run_trial(name, overrides_for(name, args.quick, scratch, args.set), args.generations, device)
        for generation, seconds in enumerate(run["seconds"], start=1):
            fields = {"benchmark": "generation", "spec": name, "device": device_name(device),
                      "generation": generation, "seconds": seconds}
            if not args.gpu:
                fields["ratio_to_target"] = round(seconds / CPU_TARGET_S, 3)
            report(**fields)
    if args.gpu:
        for name in args.packing:
            packing(name, overrides_for(name, args.quick, scratch, args.set), args.generations, device,
                    report)
    if args.out:
        args.out.write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
