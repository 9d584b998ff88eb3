"""Time per generation of the class-conditional DDPM: train / sample / metrics.

    python benchmarks/ddpm_generation.py            # CPU: the shipped digits specs
    python benchmarks/ddpm_generation.py --gpu      # GPU: MNIST at MAD's settings + packing

CPU (the digits specs as shipped, G1 then G2 of a fully synthetic loop): seconds spent
training, drawing the next generation's synthetic samples and computing the metrics,
against the 60 s target per generation (ratio printed), at lam = 1 and lam = 0.5.

GPU:
1. MNIST at MAD's settings (mad_core/specs/ddpm_mnist_fully_synthetic.yaml: 60,000
   images padded to 32x32, T = 500, ancestral sampling, 20 epochs): a whole generation
   takes long, so the benchmark measures the rates (seconds per training step, seconds
   per sampling step on a batch of sample_batch_size images, with and without guidance)
   and the metric time on n_eval images, and multiplies out one generation. Real MNIST is
   read with --mnist-root; otherwise a stand-in of the same shape (digits upscaled to
   28x28, repeated to 60,000): the timings depend on the shapes only.
2. Packing (--packing digits mnist): a trial run by 1 process alone, then by 4 processes
   at once on the same GPU (what four trials with resources.gpu = 0.25 do: Ray starts them
   as processes that share the card, each with a quarter of the node's cores);
   generations per second of 4 against 1. "digits" is the shipped digits spec; "mnist" is
   MAD's MNIST network and batch sizes with fewer steps.

Prints one JSON line per measurement and a summary; --out FILE writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.packing import device_name, packing as gpu_packing  # noqa: E402
from mad_core.factory import make_evaluator, make_model, make_real_data  # noqa: E402
from mad_core.samples import Samples  # noqa: E402
from mad_core.spec import resolve_spec  # noqa: E402
from mad_core.spec_files import apply_overrides, find_spec_file, load_yaml_mapping  # noqa: E402

CPU_TARGET_S = 60.0
MNIST_SPEC = "ddpm_mnist_fully_synthetic"
RESULTS: list[dict] = []


def report(**fields) -> None:
    RESULTS.append(fields)
    print(json.dumps(fields), flush=True)


def shipped(name: str, overrides: list[str]):
    return resolve_spec(apply_overrides(load_yaml_mapping(find_spec_file(name)), overrides))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def generation_split(spec, device: str, generations: int = 2) -> list[dict]:
    """Seconds of train / sample (n_syn for the next generation) / metrics per generation
    of a fully synthetic loop, run by hand on the loop's own pieces."""
    real = make_real_data(spec)
    started = time.perf_counter()
    evaluator = make_evaluator(spec, real, device)
    setup = time.perf_counter() - started
    source = real.source
    training = Samples(source.samples[:spec.n_init], source.labels[:spec.n_init])
    rows = []
    for generation in range(1, generations + 1):
        rng = np.random.default_rng(generation)
        times = {}
        started = time.perf_counter()
        model = make_model(spec, real, device).fit(training, rng)
        synchronize(device)
        times["train"] = time.perf_counter() - started
        started = time.perf_counter()
        training = model.sample(spec.n_syn, spec.lam, rng)
        times["sample"] = time.perf_counter() - started
        started = time.perf_counter()
        metrics = evaluator(model, rng)
        times["metrics"] = time.perf_counter() - started
        rows.append({"generation": generation, **{k: round(v, 2) for k, v in times.items()},
                     "total": round(sum(times.values()), 2), "fid": round(metrics["fid"], 3),
                     "class_fidelity": round(metrics["class_fidelity"], 3)})
    rows[0]["evaluator_setup"] = round(setup, 2)
    return rows


def cpu_benchmark(quick: bool) -> None:
    import torch

    overrides = ["model_options.steps=20", "metrics.n_eval=100"] if quick else []
    print(f"# CPU: {torch.get_num_threads()} torch threads, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    for lam in (1.0, 0.5):
        spec = shipped("ddpm_digits_fully_synthetic", [*overrides, f"lam={lam}"])
        for row in generation_split(spec, "cpu"):
            report(benchmark="digits_generation_cpu", lam=lam, **row,
                   ratio_to_target=round(row["total"] / CPU_TARGET_S, 3))


# -- GPU --------------------------------------------------------------------------------
def write_mnist_stand_in(root: Path, count: int) -> None:
    """IDX files of `count` training (and count // 6 test) 28x28 images: the digits
    upscaled, repeated. Timing stand-in for MNIST where the real files are absent."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([np.asarray(Image.fromarray((image * 255 / 16).astype(np.uint8))
                                  .resize((28, 28), Image.Resampling.BILINEAR))
                       for image in digits.images])
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", count), ("t10k", max(count // 6, 100))):
        index = np.arange(n) % len(images)
        for kind, array in (("images-idx3-ubyte", images[index]),
                            ("labels-idx1-ubyte", digits.target[index])):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big")
                                                             for s in array.shape)
            (raw / f"{prefix}-{kind}").write_bytes(header + array.astype(np.uint8).tobytes())


class _Fixed:
    """Stands in for a model in a metrics timing: returns given images and labels."""

    conditional = True

    def __init__(self, samples: Samples):
        self.samples = samples

    def sample(self, n, bias, rng):
        return self.samples.head(n)


def mnist_rates(mnist_root: str | None, quick: bool, device: str) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="mnist"))
    root = mnist_root
    if root is None:
        write_mnist_stand_in(scratch, 2000 if quick else 60_000)
        root = str(scratch)
    overrides = [f"data.root={root}"]
    if quick:
        overrides += ["n_init=2000", "n_syn=2000", "metrics.n_eval=500",
                      "model_options.sample_batch_size=250", "model_options.base_channels=16"]
    spec = shipped(MNIST_SPEC, overrides)
    options = spec.model_options
    real = make_real_data(spec)
    started = time.perf_counter()
    evaluator = make_evaluator(spec, real, device)
    report(benchmark="mnist_metrics_setup", seconds=round(time.perf_counter() - started, 2),
           note="LeNet-5 trained on the device (once per dataset) + reference features")
    training = Samples(real.source.samples, real.source.labels)
    steps_per_generation = options["epochs"] * -(-len(training) // options["batch_size"])
    timed_steps = 20 if quick else 100
    rates = {}
    for steps in (10, timed_steps):  # the first fit warms up cuDNN's autotuning
        model = make_model(shipped(MNIST_SPEC, [*overrides, f"model_options.steps={steps}"]),
                           real, device)
        started = time.perf_counter()
        model.fit(training, np.random.default_rng(0))
        synchronize(device)
        rates["train_step"] = (time.perf_counter() - started) / steps
    batch = options["sample_batch_size"]
    sampling_steps = 10
    ddim = shipped(MNIST_SPEC, [*overrides, "model_options.sampler=ddim",
                                f"model_options.sampler_steps={sampling_steps}"])
    sampler = make_model(ddim, real, device).load_state_dict(model.state_dict())
    for lam in (1.0, 0.5):
        sampler.sample(batch, lam, np.random.default_rng(0))  # warm-up
        started = time.perf_counter()
        sampler.sample(batch, lam, np.random.default_rng(1))
        rates[f"sample_step_lam{lam}"] = (time.perf_counter() - started) / sampling_steps
    held_out = Samples(real.held_out.samples, real.held_out.labels)
    count = min(spec.metrics["n_eval"], len(held_out))
    evaluator.n_eval = count
    started = time.perf_counter()
    evaluator(_Fixed(held_out), np.random.default_rng(0))
    metrics_s = time.perf_counter() - started
    drawn = spec.n_syn + spec.metrics["n_eval"] + 80  # next generation + metrics + grid
    for lam in (1.0, 0.5):
        sample_s = drawn / batch * options["timesteps"] * rates[f"sample_step_lam{lam}"]
        train_s = steps_per_generation * rates["train_step"]
        report(benchmark="mnist_generation_gpu", device=device_name(device),
               lam=lam, train_step_s=round(rates["train_step"], 5),
               sample_step_s=round(rates[f"sample_step_lam{lam}"], 5), sample_batch=batch,
               metrics_s=round(metrics_s, 2), train_s=round(train_s, 1),
               sample_s=round(sample_s, 1), total_s=round(train_s + sample_s + metrics_s, 1),
               train_steps=steps_per_generation, images_drawn=drawn,
               data="MNIST" if mnist_root else "MNIST-shaped stand-in",
               note="measured rates x MAD's counts (one generation is not run whole)")


# What one packed trial runs: (spec, overrides, generations). "mnist" is MAD's MNIST
# network and batch sizes with fewer steps (40 training steps, 10 DDIM steps, 10,000
# images drawn per use), so that 1 and 4 processes finish in minutes.
PACKED_TRIALS = {
    "digits": ("ddpm_digits_fully_synthetic", [], 4),
    "mnist": (MNIST_SPEC, ["n_init=10000", "n_syn=10000", "metrics.n_eval=10000",
                           "model_options.steps=40", "model_options.sampler=ddim",
                           "model_options.sampler_steps=10",
                           "model_options.sample_batch_size=2500"], 2),
}
QUICK_OVERRIDES = {
    "digits": ["model_options.steps=20", "metrics.n_eval=100"],
    "mnist": ["n_init=500", "n_syn=500", "metrics.n_eval=200", "model_options.base_channels=8",
              "model_options.steps=5", "model_options.sampler=ddim",
              "model_options.sampler_steps=2", "model_options.sample_batch_size=250"],
}


def packing(which: str, quick: bool, device: str) -> None:
    """Generations per second of 4 processes sharing the device against 1 alone."""
    name, overrides, generations = PACKED_TRIALS[which]
    if quick:
        overrides, generations = QUICK_OVERRIDES[which], 2
    if which == "mnist":
        root = Path(tempfile.mkdtemp(prefix="mnist"))
        write_mnist_stand_in(root, 600 if quick else 12_000)
        overrides = [*overrides, f"data.root={root}"]
    # The LeNet and reference features are cached before the workers start.
    spec = shipped(name, overrides)
    make_evaluator(spec, make_real_data(spec), device)
    gpu_packing(name, overrides, generations, device, report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="the GPU benchmarks (needs CUDA)")
    parser.add_argument("--mnist-root", help="folder with MNIST/raw/ IDX files")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--out", type=Path, help="write every measurement as JSON here")
    parser.add_argument("--device", default="cuda", help="with --gpu (cpu: check the script)")
    parser.add_argument("--packing", nargs="+", choices=tuple(PACKED_TRIALS),
                        default=["digits"], help="with --gpu: the trials packed 4 to a device")
    parser.add_argument("--packing-only", action="store_true", help="with --gpu: skip MNIST rates")
    args = parser.parse_args()
    if args.gpu:
        if not args.packing_only:
            mnist_rates(args.mnist_root, args.quick, args.device)
        for which in args.packing:
            packing(which, args.quick, args.device)
    else:
        cpu_benchmark(args.quick)
    if args.out:
        args.out.write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
