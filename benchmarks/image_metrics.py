"""Speed and memory of the image metrics on CPU.

    python benchmarks/image_metrics.py [--threads 2] [--skip-60k]

Prints LeNet-5 features per second (batched, against one image at a time), and the
time and peak memory of precision/recall at 10k x 10k and 60k x 60k features (d = 84)
against a naive full-distance-matrix implementation at 10k, and the 60k / 10k time
ratio against the quadratic expectation of 36. Each precision/recall measurement runs in
a fresh process, whose peak resident memory (Linux /proc) above its inputs is reported.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time

import numpy as np
import torch

FEATURE_DIM = 84


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real-like and fake-like (N, 84) float32 features: standard and 10 % wider Gaussians."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, FEATURE_DIM)).astype(np.float32),
            (1.1 * rng.standard_normal((n, FEATURE_DIM))).astype(np.float32))


def _naive_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """The textbook version: full float64 distance matrices in memory at once."""
    real, fake = torch.from_numpy(real).double(), torch.from_numpy(fake).double()
    real_radii = torch.cdist(real, real).kthvalue(k + 1, dim=1).values  # k + 1: the point itself is 0
    fake_radii = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    cross = torch.cdist(real, fake)
    return (float((cross <= real_radii[:, None]).any(0).double().mean()),
            float((cross <= fake_radii[None, :]).any(1).double().mean()))


def _status_gib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak) in GiB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20  # the file counts KiB
    raise KeyError(field)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(task: str, n: int, threads: int) -> tuple[float, float, float, tuple[float, float]]:
    """(wall seconds, CPU seconds, peak memory above the inputs in GiB, (precision, recall)) of one run.

    CPU seconds (all threads) are reported next to wall time because on a shared
    machine wall time also measures the neighbours.
    """
    torch.set_num_threads(threads)
    from mad_core.metrics.precision_recall import precision_recall

    real, fake = _features(n, seed=n)
    if task == "chunked":
        precision_recall(real[:100], fake[:100])  # warm-up: first-call costs are not the metric's
    # Reset the peak to the current resident size (Linux >= 4.0). getrusage's ru_maxrss
    # would not do: it keeps the parent's peak from before the process started.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    baseline = _status_gib("VmRSS")
    cpu_started, started = _cpu_seconds(), time.perf_counter()
    if task == "chunked":
        result = precision_recall(real, fake, k=3)
        scores = (result.precision, result.recall)
    else:
        scores = _naive_precision_recall(real, fake, k=3)
    seconds, cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu_started
    return seconds, cpu_seconds, _status_gib("VmHWM") - baseline, scores


def _in_fresh_process(task: str, n: int, threads: int):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (task, n, threads))


def _lenet_throughput(threads: int) -> None:
    torch.set_num_threads(threads)
    from mad_core.features.lenet import cached_lenet
    from mad_core.images.datasets import load_digits

    digits = load_digits()
    with tempfile.TemporaryDirectory() as cache_dir:
        started = time.perf_counter()
        trained = cached_lenet(digits.train, digits.test, cache_dir=cache_dir, seed=0, progress=False)
        print(f"LeNet-5 trained on digits in {time.perf_counter() - started:.1f} s, "
              f"test accuracy {trained.test_accuracy:.4f}")
    # 60,000 MNIST-sized images: digits enlarged to 28x28 (the resize to 32x32 is part of the cost).
    images = np.kron(np.resize(digits.train.samples, (60_000, 1, 8, 8)), np.ones((1, 1, 3, 3), np.float32))
    images = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    trained.features(images[:1024])  # warm-up
    started = time.perf_counter()
    trained.features(images)
    batched = len(images) / (time.perf_counter() - started)
    started = time.perf_counter()
    for image in images[:500]:
        trained.features(image[None], batch_size=1)
    one_by_one = 500 / (time.perf_counter() - started)
    print(f"LeNet-5 features (28x28 -> 84-d), {threads} threads: {batched:,.0f} images/s batched (1024), "
          f"{one_by_one:,.0f} images/s one at a time; ratio {batched / one_by_one:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--skip-60k", action="store_true", help="omit the 60k x 60k run (~1.5 min)")
    args = parser.parse_args()

    _lenet_throughput(args.threads)

    chunked_10k = _in_fresh_process("chunked", 10_000, args.threads)
    naive_10k = _in_fresh_process("naive", 10_000, args.threads)
    print(f"precision/recall 10k x 10k, d=84, k=3: chunked {_summary(chunked_10k)}; "
          f"naive full matrices {_summary(naive_10k)}; chunked/naive: time {chunked_10k[0] / naive_10k[0]:.2f}, "
          f"CPU {chunked_10k[1] / naive_10k[1]:.2f}, memory {chunked_10k[2] / naive_10k[2]:.2f}")
    print(f"  (precision, recall): chunked {chunked_10k[3]}, naive {naive_10k[3]}")
    if args.skip_60k:
        return
    chunked_60k = _in_fresh_process("chunked", 60_000, args.threads)
    print(f"precision/recall 60k x 60k, d=84, k=3: chunked {_summary(chunked_60k)}; 60k/10k: "
          f"time {chunked_60k[0] / chunked_10k[0]:.1f}, CPU {chunked_60k[1] / chunked_10k[1]:.1f} "
          f"(quadratic expectation 36.0); a naive run would need 3 x {60_000**2 * 8 / 2**30:.0f} GiB "
          f"of distance matrices")
    print(f"  (precision, recall): {chunked_60k[3]}")


def _summary(measured: tuple[float, float, float, tuple[float, float]]) -> str:
    return f"{measured[0]:.2f} s ({measured[1]:.2f} CPU s), peak +{measured[2]:.2f} GiB"


if __name__ == "__main__":
    main()
