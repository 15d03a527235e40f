"""Train the default model shipped with the gpt plugin (plugins/genkit_gpt/default/).

A 1.1 M-parameter GPT-2 (4 layers, 4 heads, width 128, context 128 tokens) with a 2,048
byte-level BPE vocabulary, trained on the built-in ``pydoc`` corpus (Python's own English
documentation) through genkit's engine, then saved with fp16 weights (about 2.2 MB).
2,000 steps of 16 x 128 tokens on one CPU thread: the shipped model took 34 min on a shared
2-core machine under heavy load (about 1 s/step); an idle core is faster. A killed run
resumes where it stopped (same command).

    OMP_NUM_THREADS=1 python scripts/train_default_gpt.py            # ~15 min, 1 thread
    genkit sample --plugin gpt --prompt "The return statement"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "plugins" / "genkit_gpt" / "default"
CONFIG = dict(tokenizer="bpe", vocab_size=2048, n_layer=4, n_head=4, n_embd=128,
              block_size=128, dropout=0.1)
MAX_BYTES = 3 * 1024 * 1024


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "default-gpt",
                   help="training run directory (checkpoints, metrics.jsonl); resumed if present")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the fp16 model goes")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    import genkit
    from genkit.store.checkpoint import save_checkpoint, step_checkpoints

    torch.set_num_threads(args.threads)
    g = genkit.create("gpt", seed=0, **CONFIG)  # seed: the initial weights
    report = g.train("pydoc", steps=args.steps, batch_size=16, lr=2e-3, lr_schedule="cosine",
                     warmup_steps=100, weight_decay=0.1, clip_grad=1.0, seed=0, device="cpu",
                     out=args.run_dir, checkpoint_every=250, keep=2, eval_every=500,
                     log_every=50, progress=False, log_with="none",
                     resume=bool(step_checkpoints(args.run_dir)))
    print(f"trained {report.steps} steps in {report.seconds:.0f} s; eval {report.eval}")
    save_checkpoint(g, args.out, weights_dtype="float16")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")
    if size > MAX_BYTES:
        raise SystemExit(f"the default model is {size} bytes, over the {MAX_BYTES} limit")

    shipped = genkit.load(args.out, device="cpu")  # the fp16 weights, as users get them
    figures = shipped.evaluate(genkit.load_data("pydoc", split="test"))
    print("shipped model, held-out pydoc:", json.dumps({k: round(v, 4) for k, v in figures.items()}))
    print(shipped.sample(1, seed=0, prompt="The return statement", max_new_tokens=60)[0])


if __name__ == "__main__":
    main()
