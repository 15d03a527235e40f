"""Tokens per second of text generation: genkit's gpt sampler vs transformers' generate.

Both run the same model object, prompt, length and sampling settings (temperature, top-k,
top-p through transformers' own logits processors) in the same process, alternating, at
batch 1 and batch 16. genkit goes through its full public path (``g.sample``: seeds,
per-row random streams, decoding to text); transformers through ``model.generate``.
Prints the median tokens/s of each and their ratio (genkit / transformers).

    python benchmarks/generate_gpt.py                       # the shipped default model
    python benchmarks/generate_gpt.py --checkpoint runs/gpt --new-tokens 100 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a gpt checkpoint (default: the shipped default model)")
    p.add_argument("--prompt", default="The return statement")
    p.add_argument("--new-tokens", type=int, default=120)
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="a short smoke run (2 repeats)")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.new_tokens = 2, min(args.new_tokens, 40)
    return args


def load(checkpoint: str | None):  # -> genkit.Generator
    import genkit
    from genkit.discovery.registry import get_registry

    path = checkpoint or get_registry().generator("gpt").default_checkpoint_path()
    return genkit.load(path, device="cpu")


def time_genkit(g, args: argparse.Namespace, batch: int) -> float:
    """Tokens/s of g.sample for ``batch`` samples in one batch."""
    start = time.perf_counter()
    g.sample(batch, seed=0, batch_size=batch, prompt=args.prompt, max_new_tokens=args.new_tokens,
             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, stop_at_eos=False)
    return batch * args.new_tokens / (time.perf_counter() - start)


def time_transformers(g, args: argparse.Namespace, batch: int) -> float:
    """Tokens/s of model.generate on the same model, prompt and settings."""
    import torch
    from transformers import GenerationConfig

    ids = torch.tensor([g.tokenizer(args.prompt)["input_ids"]] * batch)  # (B, P)
    config = GenerationConfig(do_sample=True, max_new_tokens=args.new_tokens,
                              min_new_tokens=args.new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p,
                              pad_token_id=g.tokenizer.eos_token_id)
    start = time.perf_counter()
    with torch.inference_mode():
        out = g.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    seconds = time.perf_counter() - start
    new = out.shape[1] - ids.shape[1]
    assert new == args.new_tokens, f"transformers made {new} tokens, not {args.new_tokens}"
    return batch * new / seconds


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    g = load(args.checkpoint)
    prompt_tokens = len(g.tokenizer(args.prompt)["input_ids"])
    if prompt_tokens + args.new_tokens > g.context_length():
        raise SystemExit(f"prompt ({prompt_tokens}) + new tokens ({args.new_tokens}) exceed the "
                         f"context ({g.context_length()}); transformers' generate cannot slide")
    print(f"model {g.num_parameters() / 1e6:.2f} M params, context {g.context_length()}, "
          f"prompt {prompt_tokens} tokens + {args.new_tokens} new, temperature "
          f"{args.temperature}, top_k {args.top_k}, top_p {args.top_p}, threads {args.threads}")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        time_genkit(g, args, batch)  # warm-up
        time_transformers(g, args, batch)
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternate, so machine noise hits both alike
            ours.append(time_genkit(g, args, batch))
            theirs.append(time_transformers(g, args, batch))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"batch {batch:2d}: genkit {a:8.1f} tok/s   transformers generate {b:8.1f} tok/s"
              f"   ratio {a / b:.2f}x   (medians of {args.repeats}; genkit runs "
              f"{', '.join(f'{x:.0f}' for x in ours)}; transformers {', '.join(f'{x:.0f}' for x in theirs)})")
        print(f"RESULT generate_gpt_b{batch}_genkit_tok_per_s={a:.1f} tokens/s")
        print(f"RESULT generate_gpt_b{batch}_transformers_tok_per_s={b:.1f} tokens/s")
        print(f"RESULT generate_gpt_b{batch}_ratio={a / b:.3f}")


if __name__ == "__main__":
    main()
