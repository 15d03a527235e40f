"""Training-engine overhead: genkit's engine against a plain PyTorch loop, same model and batches.

Both loops run the plugin's own ``training_step`` on identical batches in the same order
with the same optimizer; the plain loop does only ``zero_grad / backward / step``, so the
ratio is what the engine (accelerate, seeding, EMA off, logging, progress) costs.

    python benchmarks/train_overhead.py                      # diffusion UNet and VAE
    python benchmarks/train_overhead.py --plugin vae --steps 200 --rounds 5

Both paths are warmed up first, and the rounds alternate which one runs first.
Prints ``RESULT train_overhead_<plugin>_ratio=<genkit/plain steps per second>``; goal >= 0.97.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = {
    "diffusion": {"block_out_channels": (16, 32, 32), "norm_num_groups": 8},
    "vae": {},
    "gan": {},
}


def plain_loop(generator, batches, lr: float) -> float:
    """Steps per second of the simplest correct loop over pre-collated ``batches``."""
    import torch

    net = generator.modules()
    optimizer = torch.optim.AdamW([p for m in net.values() for p in m.parameters()], lr=lr)
    ctx = SimpleNamespace(models=net, generator=torch.Generator().manual_seed(0), step=0,
                          device=torch.device("cpu"), unwrap=lambda m: m)
    for m in net.values():
        m.train()
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        ctx.step = step
        loss = generator.training_step(batch, ctx)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(batches) / (time.perf_counter() - start)


def one_round(plugin: str, steps: int, batch_size: int, plain_first: bool = False
              ) -> tuple[float, float]:
    """Steps per second through genkit and through the plain loop, in either order."""
    if plain_first:
        plain = plain_round(plugin, steps, batch_size)
        return genkit_round(plugin, steps, batch_size), plain
    ours = genkit_round(plugin, steps, batch_size)
    return ours, plain_round(plugin, steps, batch_size)


def genkit_round(plugin: str, steps: int, batch_size: int) -> float:
    import genkit

    g = genkit.create(plugin, **CONFIGS.get(plugin, {}))
    lr = g.train_defaults.get("lr", 1e-3)
    report = g.train("digits", steps=steps, batch_size=batch_size, lr=lr, ema_decay=0,
                     log_with="none", progress=True, device="cpu", log_every=50)
    return report.steps_per_second


def plain_round(plugin: str, steps: int, batch_size: int) -> float:
    import genkit
    from genkit.data.loading import load_data
    from genkit.train.loader import SeededBatchSampler

    fresh = genkit.create(plugin, **CONFIGS.get(plugin, {}))  # same init (same seed)
    lr = fresh.train_defaults.get("lr", 1e-3)
    dataset = fresh.make_dataset(load_data("digits"), "train")
    sampler = iter(SeededBatchSampler(len(dataset), batch_size, 0, 0, 1))
    collate = (lambda x: x) if getattr(dataset, "batched", False) else None
    from torch.utils.data import default_collate

    batches = []
    for _ in range(steps):
        idx = next(sampler)
        items = dataset.__getitems__(idx) if collate else [dataset[i] for i in idx]
        batches.append(items if collate else default_collate(items))
    return plain_loop(fresh, batches, lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", action="append", help="plugins to measure (repeatable)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short run (CI smoke)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 30, 1
    for plugin in args.plugin or ["diffusion", "vae"]:
        ratios, g_sps, p_sps = [], [], []
        one_round(plugin, 20, args.batch_size)  # warm-up of both paths (kernels, caches), untimed
        for r in range(args.rounds):
            a, b = one_round(plugin, args.steps, args.batch_size, plain_first=r % 2 == 1)
            g_sps.append(a)
            p_sps.append(b)
            ratios.append(a / b)
        print(f"{plugin}: genkit {statistics.median(g_sps):.2f} steps/s, plain loop "
              f"{statistics.median(p_sps):.2f} steps/s over {args.rounds} rounds of {args.steps} "
              f"steps, batch {args.batch_size}")
        print(f"RESULT train_overhead_{plugin}_genkit_steps_per_s={statistics.median(g_sps):.3f}")
        print(f"RESULT train_overhead_{plugin}_plain_steps_per_s={statistics.median(p_sps):.3f}")
        print(f"RESULT train_overhead_{plugin}_ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
