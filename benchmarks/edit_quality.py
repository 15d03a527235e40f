"""Editing quality on held-out digits: inpainting and image-to-image, judged by a classifier.

    python benchmarks/edit_quality.py                    # 200 test digits, centre masked
    python benchmarks/edit_quality.py --mask left        # the left half masked instead
    python benchmarks/edit_quality.py --quick            # 40 digits, a smoke test

The digits are the first ``--n`` of the held-out split (``genkit.load_data("digits",
"test")``), brought to the models' 16x16 as training brought its data. The judge is
genkit's evaluation classifier (the one ``genkit eval`` and the training watch use,
trained on half of the train split and cached). Each family's shipped model
(``plugins/*/default``) inpaints the masked region; beside it stand the real images and
the masked input left as it is (the hole black, the background of the digits, which is
the masked input's best chance). Figures: the share of images recognised as their true
class, and that share over the real images' share. Image-to-image (diffusion, which is
class-conditional): at strength 0.3 without a label, the share that keeps its class; at
0.9 with a requested label (never the true one), the share that follows it.

A family that cannot edit (yet) is reported as such, not failed.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Digits at 16x16, their labels, masks, and the judge."""
    import numpy as np
    import torch

    import genkit
    from genkit.eval.features import batched, feature_classifier, split_train, to_input
    from genkit.imaging import tensor_to_uint8, uint8_to_images, uint8_to_tensor

    train, test = genkit.load_data("digits", "train"), genkit.load_data("digits", "test")
    fit, _ = split_train(train)
    device = torch.device("cpu")
    classifier, info = feature_classifier(fit, test, 16, 1, device, 10)
    real = tensor_to_uint8(uint8_to_tensor(test.images[: args.n], 16, 1))  # (n, 16, 16, 1)
    hole = np.zeros((16, 16), np.uint8)
    if args.mask == "centre":
        hole[4:12, 4:12] = 255
    else:
        hole[:, :8] = 255
    masked = real.copy()
    masked[:, hole > 0] = 0  # the hole black: the digits' background

    def judge(images: Any) -> np.ndarray:
        array = np.stack([np.asarray(im) for im in images])[..., None] \
            if not isinstance(images, np.ndarray) else images
        return batched(classifier, to_input(array, 16, 16, 1), device).argmax(1).numpy()

    from PIL import Image

    return {"real": real, "images": uint8_to_images(real), "masked": masked,
            "labels": test.labels[: args.n], "mask": Image.fromarray(hole, "L"),
            "judge": judge, "classifier_accuracy": info["test_accuracy"]}


def default_model(name: str) -> Any:
    import genkit

    spec = next(s for s in genkit.generators() if s.name == name)
    return genkit.load(spec.default_checkpoint_path(), device="cpu")


def run_edit(generator: Any, images: list[Any], **kwargs: Any) -> tuple[list[Any] | None, str]:
    """The edits, or None and the one-line reason the family cannot make them."""
    from genkit.errors import GenkitError

    try:
        return generator.edit(images, seed=0, batch_size=50, **kwargs), ""
    except GenkitError as exc:
        return None, str(exc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="held-out digits (at most 359)")
    parser.add_argument("--mask", choices=("centre", "left"), default="centre")
    parser.add_argument("--families", default="diffusion,vae,gan")
    parser.add_argument("--no-repaint", action="store_true", help="skip the RePaint row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="40 digits, no RePaint row")
    args = parser.parse_args()
    if args.quick:
        args.n, args.no_repaint = min(args.n, 40), True
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    data = setup(args)
    judge, labels = data["judge"], data["labels"]
    real_share = float(np.mean(judge(data["real"]) == labels))
    masked_share = float(np.mean(judge(data["masked"]) == labels))
    tag = f"edit_quality_{args.mask}"
    print(f"{args.n} held-out digits, mask: {args.mask}; classifier test accuracy "
          f"{data['classifier_accuracy']:.3f}")
    print(f"RESULT {tag}_real_share={real_share:.3f}")
    print(f"RESULT {tag}_masked_share={masked_share:.3f}")
    print(f"RESULT {tag}_masked_over_real={masked_share / real_share:.3f}")
    masks = [data["mask"]] * args.n
    for family in args.families.split(","):
        generator = default_model(family)
        rows = [("", {})]
        if family == "diffusion" and not args.no_repaint:
            rows.append(("_repaint", {"inpaint": "repaint"}))
        for suffix, options in rows:
            start = time.perf_counter()
            out, reason = run_edit(generator, data["images"], task="inpaint", masks=masks,
                                   **options)
            if out is None:
                print(f"{family}{suffix}: cannot inpaint: {reason}")
                continue
            share = float(np.mean(judge(out) == labels))
            seconds = time.perf_counter() - start
            print(f"RESULT {tag}_{family}{suffix}_share={share:.3f}")
            print(f"RESULT {tag}_{family}{suffix}_over_real={share / real_share:.3f}")
            print(f"RESULT {tag}_{family}{suffix}_images_per_s={args.n / seconds:.1f} images/s")
        if family == "diffusion":
            img2img(generator, data, labels, judge, real_share)


def img2img(generator: Any, data: dict[str, Any], labels: Any, judge: Any,
            real_share: float) -> None:
    """Strength 0.3 keeps the class; strength 0.9 with a label follows the label."""
    import numpy as np

    out, reason = run_edit(generator, data["images"], task="img2img", strength=0.3)
    if out is None:
        print(f"img2img: {reason}")
        return
    predicted = judge(out)
    print(f"RESULT edit_quality_img2img_0.3_class_kept={np.mean(predicted == labels):.3f}")
    print(f"RESULT edit_quality_img2img_0.3_kept_over_real="
          f"{np.mean(predicted == labels) / real_share:.3f}")
    asked = (labels + 1 + np.arange(len(labels)) % 9) % 10  # never the true label
    out, _ = run_edit(generator, data["images"], task="img2img", strength=0.9,
                      labels=asked.tolist())
    print(f"RESULT edit_quality_img2img_0.9_follows_label={np.mean(judge(out) == asked):.3f}")


if __name__ == "__main__":
    main()
