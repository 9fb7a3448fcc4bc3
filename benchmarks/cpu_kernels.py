"""Speed and reproducibility of the smoke model's CPU kernels: native (AVX-512 here) vs pinned AVX2, contiguous vs
channels_last.

Usage: python benchmarks/cpu_kernels.py [--repeats 3] [--out benchmarks/cpu_kernels.tsv]

Each setting runs in a fresh process (the kernel choice is read from the environment when torch starts), one thread,
as the smoke profile runs every job. It times the two costs that dominate the smoke Table 1 (benchmarks/<rule>
TSVs): a training step (forward + backward of a batch of 128 through the 0.3M-parameter ResNet, BatchNorm in train
mode) and an attack/sampler step (eval mode, gradient with respect to the input only, as ``dat.attacks`` and
``dat.sampling`` take it), and digests the weights after 20 SGD steps from one seed. Equal digests mean equal bits:
the digest of a setting is the same on every machine whose CPU runs that setting's kernels, and pinning to AVX2
(config key ``cpu_kernels: avx2``) makes that every x86-64 machine with AVX2. The median of ``--repeats`` timings is
reported; on a machine shared with other jobs the ratios are more telling than the milliseconds.
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
}


def measure(channels_last: bool, steps: int = 10) -> dict:
    """Run in the child process: time one training step and one input-gradient step; digest 20 SGD steps."""
    import torch
    from torch import nn

    from dat.models import build_model

    torch.set_num_threads(1)
    layout = torch.channels_last if channels_last else torch.preserve_format
    g = torch.Generator().manual_seed(1)
    x = torch.rand(128, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (128,), generator=g)
    torch.manual_seed(0)
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.286], std=[0.353],
                        widths=[32, 64, 128], blocks_per_stage=1, first_stride=2).to(memory_format=layout)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xx = x.contiguous(memory_format=layout)

    def train_step() -> None:
        loss = nn.functional.cross_entropy(model(xx), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def input_grad_step() -> None:
        x_adv = xx.clone().requires_grad_(True)
        logits = model(x_adv)
        torch.autograd.grad(logits.gather(1, y[:, None]).sum(), x_adv)

    model.train()
    for _ in range(20):
        train_step()
    digest = hashlib.sha256(b"".join(p.detach().contiguous().numpy().tobytes() for p in model.parameters()))
    out = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "weights_sha256": digest.hexdigest()[:16]}
    for name, fn, mode in (("train_step_ms", train_step, "train"), ("input_grad_step_ms", input_grad_step, "eval")):
        getattr(model, mode)()
        fn()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        out[name] = (time.perf_counter() - t0) / steps * 1000
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("benchmarks/cpu_kernels.tsv"))
    p.add_argument("--child", choices=["contiguous", "channels_last"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child == "channels_last")))
        return 0
    import pandas as pd

    rows = []
    for kernels, env in SETTINGS.items():
        for layout in ("contiguous", "channels_last"):
            runs = []
            for _ in range(args.repeats):
                done = subprocess.run([sys.executable, __file__, "--child", layout], env={**os.environ, **env},
                                      capture_output=True, text=True, check=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            digests = {r["weights_sha256"] for r in runs}
            rows.append({"kernels": kernels, "layout": layout, "cpu_capability": runs[0]["cpu_capability"],
                         "train_step_ms": statistics.median(r["train_step_ms"] for r in runs),
                         "input_grad_step_ms": statistics.median(r["input_grad_step_ms"] for r in runs),
                         "weights_sha256": ",".join(sorted(digests)), "repeatable": len(digests) == 1})
    table = pd.DataFrame(rows)
    base = table.iloc[0]
    table["train_speedup"] = base["train_step_ms"] / table["train_step_ms"]
    table["input_grad_speedup"] = base["input_grad_step_ms"] / table["input_grad_step_ms"]
    print(table.round(2).to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.round(3).to_csv(args.out, sep="\t", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
