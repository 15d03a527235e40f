"""Training-engine overhead: genkit's engine against a plain PyTorch loop, same model and batches.

Both loops run the plugin's own ``training_step`` on identical batches in the same order
with the same optimizer (and gradient clipping where the family clips by default); the
plain loop does only ``zero_grad / backward / (clip) / step``, so the ratio is what the
engine (accelerate, seeding, EMA off, logging, progress) costs.

For the gpt family (4 layers, 4 heads, width 128, characters, batch 12 x 64) a third loop
trains a minimal hand-written GPT of the same shape (``_minigpt.py``) on the same windows:
its ratio to the plain loop is what transformers' model code costs, apart from the engine.

    python benchmarks/train_overhead.py                      # diffusion UNet, VAE and GPT
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
    "gpt": {"tokenizer": "char", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64},
}
DATA = {"gpt": "pydoc"}  # others: the built-in digits
BATCH = {"gpt": 12}  # others: --batch-size


def plain_loop(generator, batches, lr: float) -> float:
    """Steps per second of the simplest correct loop over pre-collated ``batches``."""
    import torch

    net = generator.modules()
    params = [p for m in net.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr)
    clip = generator.train_defaults.get("clip_grad")
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
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
    return len(batches) / (time.perf_counter() - start)


def minigpt_loop(generator, batches, lr: float) -> float:
    """Steps per second of the plain loop over a minimal GPT of ``generator``'s shape."""
    import torch
    from _minigpt import MiniGPT

    c = generator.config
    torch.manual_seed(0)
    model = MiniGPT(c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd).train()
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr)
    start = time.perf_counter()
    for batch in batches:
        loss = model.loss(batch["input_ids"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    return len(batches) / (time.perf_counter() - start)


def one_round(plugin: str, steps: int, batch_size: int, plain_first: bool = False
              ) -> tuple[float, float, float | None]:
    """Steps per second through genkit, the plain loop (genkit first or last) and, for
    gpt, the minimal GPT in the plain loop."""
    if plain_first:
        plain, mini = plain_round(plugin, steps, batch_size)
        return genkit_round(plugin, steps, batch_size), plain, mini
    ours = genkit_round(plugin, steps, batch_size)
    return (ours, *plain_round(plugin, steps, batch_size))


def genkit_round(plugin: str, steps: int, batch_size: int) -> float:
    import genkit

    g = genkit.create(plugin, **CONFIGS.get(plugin, {}))
    lr = g.train_defaults.get("lr", 1e-3)
    report = g.train(DATA.get(plugin, "digits"), steps=steps, batch_size=batch_size, lr=lr, ema_decay=0,
                     log_with="none", progress=True, device="cpu", log_every=50)
    return report.steps_per_second


def plain_round(plugin: str, steps: int, batch_size: int) -> tuple[float, float | None]:
    import genkit
    from genkit.data.loading import load_data
    from genkit.train.loader import SeededBatchSampler

    fresh = genkit.create(plugin, **CONFIGS.get(plugin, {}))  # same init (same seed)
    lr = fresh.train_defaults.get("lr", 1e-3)
    dataset = fresh.make_dataset(load_data(DATA.get(plugin, "digits")), "train")
    sampler = iter(SeededBatchSampler(len(dataset), batch_size, 0, 0, 1))
    collate = (lambda x: x) if getattr(dataset, "batched", False) else None
    from torch.utils.data import default_collate

    batches = []
    for _ in range(steps):
        idx = next(sampler)
        items = dataset.__getitems__(idx) if collate else [dataset[i] for i in idx]
        batches.append(items if collate else default_collate(items))
    mini = minigpt_loop(fresh, batches, lr) if plugin == "gpt" else None
    return plain_loop(fresh, batches, lr), mini


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
    for plugin in args.plugin or ["diffusion", "vae", "gpt"]:
        batch = BATCH.get(plugin, args.batch_size)
        ratios, g_sps, p_sps, m_sps = [], [], [], []
        one_round(plugin, 20, batch)  # warm-up of every path (kernels, caches), untimed
        for r in range(args.rounds):
            a, b, mini = one_round(plugin, args.steps, batch, plain_first=r % 2 == 1)
            g_sps.append(a)
            p_sps.append(b)
            ratios.append(a / b)
            if mini is not None:
                m_sps.append(mini)
        print(f"{plugin}: genkit {statistics.median(g_sps):.2f} steps/s, plain loop "
              f"{statistics.median(p_sps):.2f} steps/s over {args.rounds} rounds of {args.steps} "
              f"steps, batch {batch}")
        print(f"RESULT train_overhead_{plugin}_genkit_steps_per_s={statistics.median(g_sps):.3f}")
        print(f"RESULT train_overhead_{plugin}_plain_steps_per_s={statistics.median(p_sps):.3f}")
        print(f"RESULT train_overhead_{plugin}_ratio={statistics.median(ratios):.3f}")
        if m_sps:
            mini = statistics.median(m_sps)
            print(f"{plugin}: a minimal GPT of the same shape in the plain loop {mini:.2f} "
                  f"steps/s: transformers' model code runs at "
                  f"{statistics.median(p_sps) / mini:.2f}x of it, genkit at "
                  f"{statistics.median(g_sps) / mini:.2f}x")
            print(f"RESULT train_overhead_{plugin}_minigpt_steps_per_s={mini:.3f}")
            print(f"RESULT train_overhead_{plugin}_model_code_ratio="
                  f"{statistics.median(p_sps) / mini:.3f} transformers / minimal model")


if __name__ == "__main__":
    main()
