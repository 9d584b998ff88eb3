"""Our compact DDPM UNet against Hugging Face diffusers' UNet2DModel, on CPU with one thread.

    PYTHONPATH=/tmp/diffusers_site OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/unet_vs_diffusers.py [--sizes 8 32] [--rounds 7]

diffusers is not a dependency of this project, so it has to be on PYTHONPATH. Install
it into a separate folder, never into the project's venv, with --no-deps so that pip
cannot touch torch, numpy or any pinned package; add only the requirements the venv
lacks, at exact versions (for diffusers 0.42.1 these were, resolved by
`pip install --dry-run --report` against the venv):

    .venv/bin/python -m pip install --target /tmp/diffusers_site --no-deps \\
        diffusers==0.42.1 huggingface_hub==2.4.0 safetensors==0.8.0 regex==2026.11.19 \\
        hf-xet==1.8.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5

diffusers imports torchvision whenever torchvision is installed (for one unrelated
transformer), and our CPU venv's torchvision only imports after
``mad_core.images.torchvision_compat.ensure_torchvision_ops()``: without it
``from diffusers import UNet2DModel`` fails with "operator torchvision::nms does not
exist". This script calls it first.

What it measures, interleaving the two networks (ours, diffusers, ours, diffusers, ...
for --rounds rounds) because other jobs may share the machine:
  * import time in fresh processes (median of --import-runs): ``import torch``, then
    ``import diffusers`` and ``from diffusers import UNet2DModel``, against
    ``from mad_core.models.ddpm.unet import build_unet``;
  * per image size: one training step (forward, MSE against the noise, backward, Adam
    step) and one no-grad forward pass, in seconds per call.
Prints medians, the ratio diffusers / ours (median of the per-round ratios: > 1 means
diffusers is slower) and both parameter counts.

The diffusers configuration is by default the one that computes the same function as
ours (--diffusers-config matched): same widths, blocks, skips, GroupNorm(8) everywhere,
time embedding as a scale and shift after norm2 (resnet_time_scale_shift="scale_shift"),
single-head attention (attention_head_dim = channels), no attention in the middle block
(add_attention=False; ours has none at the lowest resolution here) and sin-then-cos
timestep features (flip_sin_to_cos=False). With it the parameter counts agree, and the
script checks that our weights, copied into it, give the same output.
--diffusers-config plain is the literal configuration (diffusers' defaults: additive time
embedding, heads of 8 channels, an attention layer in the middle block).
"""

from __future__ import annotations

import os

os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mad_core.images.torchvision_compat import ensure_torchvision_ops  # noqa: E402
from mad_core.models.ddpm.unet import UNet, build_unet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMESTEPS, NUM_CLASSES = 500, 10


@dataclass(frozen=True)
class Case:
    """One image size: both networks' settings and the batch sizes measured."""

    image_size: int
    ours: dict[str, Any]
    diffusers: dict[str, Any]
    train_batch: int
    forward_batch: int


CASES = {
    8: Case(8,
            ours=dict(base_channels=16, channel_multipliers=(1, 2), res_blocks=1),
            diffusers=dict(block_out_channels=(16, 32), layers_per_block=1,
                           down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D")),
            train_batch=128, forward_batch=1000),
    32: Case(32,
             ours=dict(base_channels=64, channel_multipliers=(1, 2, 2), res_blocks=2,
                       attention_resolutions=(16,)),
             diffusers=dict(block_out_channels=(64, 128, 128), layers_per_block=2,
                            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
             train_batch=32, forward_batch=100),
}


def import_diffusers_unet() -> type:
    ensure_torchvision_ops()
    try:
        from diffusers import UNet2DModel
    except ImportError as error:
        sys.exit(f"diffusers is not importable ({error}); install it into a separate folder "
                 "and put that folder on PYTHONPATH, see this script's docstring")
    return UNet2DModel


def build_ours(case: Case) -> UNet:
    return build_unet(generator=torch.Generator().manual_seed(0), image_channels=1,
                      image_size=case.image_size, num_classes=NUM_CLASSES, **case.ours)


def build_diffusers(case: Case, config: str) -> nn.Module:
    UNet2DModel = import_diffusers_unet()
    kwargs = dict(sample_size=case.image_size, in_channels=1, out_channels=1, norm_num_groups=8,
                  num_class_embeds=NUM_CLASSES + 1, **case.diffusers)
    if config == "matched":
        kwargs.update(resnet_time_scale_shift="scale_shift", add_attention=False,
                      flip_sin_to_cos=False, attention_head_dim=max(case.diffusers["block_out_channels"]))
    torch.manual_seed(0)  # diffusers initialises from the global RNG
    return UNet2DModel(**kwargs)


def parameter_count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def diffusers_state_from_ours(ours: UNet) -> dict[str, Tensor]:
    """Our weights under diffusers' names (matched configuration): qkv is split, 1x1 convs become linears."""
    renamed: dict[str, Tensor] = {}
    fixed = {"time_mlp.0": "time_embedding.linear_1", "time_mlp.2": "time_embedding.linear_2",
             "class_embedding": "class_embedding", "stem": "conv_in",
             "out_norm": "conv_norm_out", "out_conv": "conv_out"}
    resnet = {"norm1": "norm1", "conv1": "conv1", "embedding": "time_emb_proj", "norm2": "norm2",
              "conv2": "conv2", "skip": "conv_shortcut"}
    for name, tensor in ours.state_dict().items():
        parts = name.split(".")
        prefix, leaf = ".".join(parts[:-1]), parts[-1]
        if prefix in fixed:
            renamed[f"{fixed[prefix]}.{leaf}"] = tensor
            continue
        if parts[0] in ("downsamplers", "upsamplers"):
            block = "down_blocks" if parts[0] == "downsamplers" else "up_blocks"
            renamed[f"{block}.{parts[1]}.{parts[0]}.0.conv.{leaf}"] = tensor
            continue
        if parts[0] == "middle":  # middle.I.residual.layer.leaf
            target = "mid_block"
        else:  # down_blocks.L.I.(residual|attention).layer.leaf
            target = f"{parts[0]}.{parts[1]}"
            parts = parts[1:]
        index, kind, layer = parts[1], parts[2], parts[3]
        if kind == "residual":
            renamed[f"{target}.resnets.{index}.{resnet[layer]}.{leaf}"] = tensor
        elif layer == "norm":
            renamed[f"{target}.attentions.{index}.group_norm.{leaf}"] = tensor
        elif layer == "projection":
            renamed[f"{target}.attentions.{index}.to_out.0.{leaf}"] = tensor.flatten(1) if leaf == "weight" else tensor
        else:  # qkv: (3C, C, 1, 1) -> q, k, v
            for projection, chunk in zip(("to_q", "to_k", "to_v"), tensor.chunk(3, dim=0)):
                renamed[f"{target}.attentions.{index}.{projection}.{leaf}"] = (
                    chunk.flatten(1) if leaf == "weight" else chunk)
    return renamed


def check_same_function(case: Case, ours: UNet, theirs: nn.Module) -> float:
    """Largest |difference| of the two outputs with our weights copied into diffusers', relative to max |output|."""
    with torch.no_grad():  # our output conv starts at zero; give it weights for the check
        ours.out_conv.weight.normal_(generator=torch.Generator().manual_seed(1))
    theirs.load_state_dict(diffusers_state_from_ours(ours), strict=True)
    x, t, labels, _ = inputs(case.image_size, 16, seed=2)
    with torch.no_grad():
        expected = ours.eval()(x, t, labels)
        difference = expected - theirs.eval()(x, t, class_labels=labels).sample
    return (difference.abs().max() / expected.abs().max()).item()


def inputs(image_size: int, batch: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, image_size, image_size, generator=generator)
    t = torch.randint(0, TIMESTEPS, (batch,), generator=generator)
    labels = torch.randint(0, NUM_CLASSES + 1, (batch,), generator=generator)  # NUM_CLASSES = null
    noise = torch.randn(batch, 1, image_size, image_size, generator=generator)
    return x, t, labels, noise


def train_step(call: Callable[[Tensor, Tensor, Tensor], Tensor], network: nn.Module,
               batch: tuple[Tensor, Tensor, Tensor, Tensor]) -> Callable[[], None]:
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-4)
    x, t, labels, noise = batch

    def step() -> None:
        network.train()
        optimiser.zero_grad(set_to_none=True)
        F.mse_loss(call(x, t, labels), noise).backward()
        optimiser.step()
    return step


def forward_pass(call: Callable[[Tensor, Tensor, Tensor], Tensor], network: nn.Module,
                 batch: tuple[Tensor, Tensor, Tensor, Tensor]) -> Callable[[], None]:
    x, t, labels, _ = batch

    def forward() -> None:
        network.eval()
        with torch.no_grad():
            call(x, t, labels)
    return forward


def seconds(function: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def interleaved(functions: dict[str, Callable[[], None]], rounds: int, min_time: float) -> dict[str, list[float]]:
    """Seconds per call of each function, measured in turn, once per round, after a warm-up."""
    single = {name: seconds(function, 1) for name, function in functions.items()}  # warm-up
    single = {name: seconds(function, 1) for name, function in functions.items()}
    calls = max(1, math.ceil(min_time / min(single.values())))
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            times[name].append(seconds(function, calls))
    return times


def import_times(runs: int) -> dict[str, list[float]]:
    """Fresh processes, alternating ours and diffusers: torch's import, then the rest."""
    snippets = {
        "ours": "from mad_core.models.ddpm.unet import build_unet",
        "diffusers": ("from mad_core.images.torchvision_compat import ensure_torchvision_ops\n"
                      "ensure_torchvision_ops()\n"
                      "import diffusers\n"
                      "t_pkg = time.perf_counter()\n"
                      "from diffusers import UNet2DModel"),
    }
    template = ("import sys, time, json\nt0 = time.perf_counter()\nimport torch\nt1 = time.perf_counter()\n"
                "t_pkg = None\nn = len(sys.modules)\n{snippet}\nt2 = time.perf_counter()\n"
                "print(json.dumps([t1 - t0, t2 - t1, None if t_pkg is None else t_pkg - t1,"
                " len(sys.modules) - n, 'torchvision' in sys.modules]))")
    results: dict[str, list[float]] = {}
    for _ in range(runs):
        for name, snippet in snippets.items():
            output = subprocess.run([sys.executable, "-c", template.format(snippet=snippet)], cwd=REPO,
                                    capture_output=True, text=True, check=True).stdout
            torch_s, rest_s, package_s, modules, torchvision = json.loads(output.strip().splitlines()[-1])
            results.setdefault(f"{name}: import torch", []).append(torch_s)
            results.setdefault(f"{name}: its imports after torch", []).append(rest_s)
            if package_s is not None:
                results.setdefault(f"{name}:   of which `import diffusers`", []).append(package_s)
            results[f"{name}: modules added (torchvision loaded: {torchvision})"] = [modules]
    return results


def print_table(rows: list[tuple[str, list[float], list[float]]]) -> None:
    print(f"{'measurement':<34} {'ours s':>9} {'diffusers s':>12} {'diff/ours':>10} "
          f"{'ratio range':>14} {'rounds':>6}")
    for label, ours, theirs in rows:
        ratios = [b / a for a, b in zip(ours, theirs)]
        print(f"{label:<34} {statistics.median(ours):>9.4f} {statistics.median(theirs):>12.4f} "
              f"{statistics.median(ratios):>10.3f} {min(ratios):>6.3f}-{max(ratios):<7.3f} {len(ratios):>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32], choices=sorted(CASES))
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per measurement")
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="seconds each timed measurement lasts at least (repeated calls)")
    parser.add_argument("--import-runs", type=int, default=3, help="fresh processes per import timing (0: skip)")
    parser.add_argument("--diffusers-config", choices=("matched", "plain"), default="matched")
    args = parser.parse_args()
    torch.set_num_threads(1)
    UNet2DModel = import_diffusers_unet()
    import diffusers
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__} from "
          f"{Path(diffusers.__file__).parent.parent}, {torch.get_num_threads()} torch thread, "
          f"diffusers config: {args.diffusers_config}, {args.rounds} rounds")
    del UNet2DModel

    if args.import_runs:
        print(f"\nImports, fresh process, median of {args.import_runs}:")
        for label, values in import_times(args.import_runs).items():
            value = statistics.median(values)
            print(f"  {label:<52} {value:.3f} s" if isinstance(value, float) else f"  {label:<52} {value}")

    for size in args.sizes:
        case = CASES[size]
        ours, theirs = build_ours(case), build_diffusers(case, args.diffusers_config)
        print(f"\n{size}x{size}: parameters ours {parameter_count(ours):,}, "
              f"diffusers {parameter_count(theirs):,}")
        if args.diffusers_config == "matched":
            difference = check_same_function(case, build_ours(case), build_diffusers(case, "matched"))
            print(f"  our weights in diffusers' network: max |output difference| / max |output| "
                  f"{difference:.1e}")
        call_ours = lambda x, t, labels: ours(x, t, labels)  # noqa: E731
        call_theirs = lambda x, t, labels: theirs(x, t, class_labels=labels).sample  # noqa: E731
        rows = []
        for label, make, batch in (("train step", train_step, case.train_batch),
                                   ("forward (no grad)", forward_pass, case.forward_batch)):
            data = inputs(size, batch, seed=0)
            times = interleaved({"ours": make(call_ours, ours, data), "diffusers": make(call_theirs, theirs, data)},
                                args.rounds, args.min_time)
            rows.append((f"{label}, batch {batch}", times["ours"], times["diffusers"]))
        print_table(rows)


if __name__ == "__main__":
    main()
