"""Generate a labelled synthetic digits set with genkit, then train a classifier on it.

    python examples/batch_generate.py --per-class 100 --out synth/
    python examples/batch_generate.py --checkpoint runs/d --per-class 1000 --out synth/

The set is written with ``sample_to``: per-sample seeds, atomic files and a manifest, so
rerunning the same command after an interruption only draws what is missing. The script
then fits a scikit-learn classifier on the synthetic images alone and scores it on the
real held-out digits, beside the same classifier fitted on the real training split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression

import genkit


def to_features(images: list[Image.Image]) -> np.ndarray:
    """8x8 grey pixels in [0, 1], the digits' native size."""
    return np.stack([np.asarray(im.convert("L").resize((8, 8), Image.BILINEAR), dtype=np.float32)
                     .ravel() / 255.0 for im in images])


def load_synthetic(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a sample directory, read through its manifest."""
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    images = [Image.open(out / r["file"]) for r in records]
    return to_features(images), np.array([r["label"] for r in records])


def load_real(split: str) -> tuple[np.ndarray, np.ndarray]:
    data = genkit.load_data("digits", split=split)
    return data.images[..., 0].reshape(len(data), -1) / 255.0, data.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a class-conditional image checkpoint "
                        "(default: genkit's shipped diffusion model)")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("synth"))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.checkpoint:
        generator = genkit.load(args.checkpoint)
    else:
        spec = next(s for s in genkit.generators() if s.name == "diffusion")
        generator = genkit.load(spec.default_checkpoint_path())
    report = generator.sample_to(args.out, labels=list(range(10)), per_condition=args.per_class,
                                 batch_size=args.batch_size, seed=args.seed)
    print(report.summary())

    x_syn, y_syn = load_synthetic(args.out)
    x_train, y_train = load_real("train")
    x_test, y_test = load_real("test")
    synthetic = LogisticRegression(max_iter=2000).fit(x_syn, y_syn)
    real = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    print(f"classifier trained on {len(y_syn)} synthetic digits: "
          f"{synthetic.score(x_test, y_test):.1%} accuracy on the real test split")
    print(f"same classifier trained on {len(y_train)} real digits: "
          f"{real.score(x_test, y_test):.1%}")


if __name__ == "__main__":
    main()
