"""Train genkit's gpt for a fixed wall-clock budget on a text file; print validation bits/char.

Bits per character (total held-out nats / characters / ln 2) does not depend on the
tokenizer, so runs can be compared with other trainers on the same text and budget.
The held-out split is the last 10% of the file (genkit.data). The budget is the engine's
own ``train(time=...)``: it measures the speed, sizes the cosine schedule to end on time,
and stops when the budget is spent.

    python benchmarks/train_gpt.py corpus.txt --seconds 300
    python benchmarks/train_gpt.py pydoc --seconds 60 --tokenizer char   # built-in corpus
"""
# run_all: pydoc --seconds 300
# run_all --quick: pydoc --seconds 20 --tokenizer char

from __future__ import annotations

import argparse
import os


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("text", help="a UTF-8 text file (or 'pydoc' for the built-in corpus)")
    p.add_argument("--seconds", type=float, default=300.0, help="training wall-clock budget")
    p.add_argument("--tokenizer", default="bpe", choices=["bpe", "char"])
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a 20-second smoke run")
    args = p.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 20.0)
    return args


def main() -> None:
    args = parse_args()
    import torch

    import genkit

    torch.set_num_threads(args.threads)
    source = "pydoc" if args.text == "pydoc" else f"text:{os.path.abspath(args.text)}"
    config = dict(tokenizer=args.tokenizer, vocab_size=args.vocab_size, n_layer=args.n_layer,
                  n_head=args.n_head, n_embd=args.n_embd, block_size=args.block_size,
                  dropout=args.dropout)
    common = dict(batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed,
                  progress=False, log_with="none")

    g = genkit.create("gpt", **config)
    report = g.train(source, time=args.seconds, lr_schedule="cosine", warmup_steps=100,
                     **common)
    figures = report.eval
    print(f"data {source}  model {g.num_parameters() / 1e6:.2f} M params  vocab "
          f"{g.config.vocab_size} ({args.tokenizer})  threads {args.threads}")
    print(f"trained {report.steps - report.start_step} steps in {report.seconds:.1f} s "
          f"({report.steps_per_second:.2f} steps/s, batch {args.batch_size} x "
          f"{args.block_size} tokens); final train loss {report.final_loss:.3f}")
    print(f"validation (last 10% of the text): {figures['val_loss']:.4f} nats/token  "
          f"ppl {figures['val_ppl']:.2f}")
    print(f"RESULT train_gpt_val_bpc={figures['val_bpc']:.4f} bits/char")
    print(f"RESULT train_gpt_val_loss={figures['val_loss']:.4f} nats/token")
    print(f"RESULT train_gpt_steps={report.steps - report.start_step} steps in "
          f"{report.seconds:.0f} s")


if __name__ == "__main__":
    main()
