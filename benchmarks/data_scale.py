"""Data that scales: training on 2,000 and 50,000 images costs the same memory and start-up.

Builds folders of random 32x32 RGB PNGs (cached under ``/tmp/genkit-data-scale``, made
with a process pool), and for each size runs a short diffusion training (32x32 RGB,
``folder:PATH``, batch 64, on the CPU) in a fresh child process, measuring:

- peak RSS of the trainer (``ru_maxrss``), and the peak footprint (PSS, sampled every
  20 ms) of the trainer with its DataLoader workers;
- seconds from the child's start (interpreter included) to the end of the first
  optimizer step, and from the ``train()`` call to it;

then, in this process, loader images/s with augmentation (the training loader: seeded
order, default workers) against the UNet's training images/s at batch 64.

    python benchmarks/data_scale.py                 # 2,000 and 50,000 images
    python benchmarks/data_scale.py --quick         # 2,000 and 10,000, fewer steps

Goals: RSS(large)/RSS(small) <= 1.25; first step(large) <= 2x first step(small);
loader images/s >= 2x the model's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CACHE = Path("/tmp/genkit-data-scale")
SIDE = 32
BATCH = 64


def _write_chunk(job: tuple[str, int, int]) -> None:
    import numpy as np
    from PIL import Image

    folder, start, stop = job
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:06d}.png"))


def image_folder(n: int) -> Path:
    """``CACHE/n<N>``: N random PNGs, made once (a ``.complete`` marker says so)."""
    folder = CACHE / f"n{n}"
    if (folder / ".complete").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder), s, min(n, s + 1000)) for s in range(0, n, 1000)]
    start = time.perf_counter()
    with multiprocessing.Pool(max(1, os.cpu_count() or 1)) as pool:
        pool.map(_write_chunk, jobs)
    (folder / ".complete").write_text(str(n))
    print(f"made {n} PNGs in {folder} in {time.perf_counter() - start:.1f} s", flush=True)
    return folder


def workers() -> int:
    """The loader workers genkit picks for a lazy folder: min(4, cores - 1)."""
    from genkit.data.datasets import MAX_LOADER_WORKERS, usable_cores

    return min(MAX_LOADER_WORKERS, max(0, usable_cores() - 1))


def child(folder: str, steps: int, out: str) -> None:
    """One training run; writes its figures as JSON to ``out``."""
    import resource
    import threading

    import psutil
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import genkit

    me = psutil.Process()
    peak = {"rss": 0, "pss": 0}
    done = threading.Event()

    def sample() -> None:
        """Peak RSS and PSS of the process tree. RSS counts pages a forked worker shares
        with the trainer twice; PSS splits them, so it is the tree's real footprint."""
        while not done.is_set():
            try:
                procs = [me, *me.children(recursive=True)]
                infos = [p.memory_full_info() for p in procs]
            except psutil.Error:
                continue
            peak["rss"] = max(peak["rss"], sum(i.rss for i in infos))
            peak["pss"] = max(peak["pss"], sum(i.pss for i in infos))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()

    first: list[float] = []
    training_peak = [0.0]  # ru_maxrss at the last optimizer step: before the final evaluation

    def on_step(*_: object) -> None:
        if not first:
            first.append(time.time())
        training_peak[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    register_optimizer_step_post_hook(on_step)
    g = genkit.create("diffusion", image_size=SIDE, channels=3)
    called = time.time()
    g.train(f"folder:{folder}", steps=steps, batch_size=BATCH, device="cpu", log_with="none",
            progress=False, num_workers=workers())
    done.set()
    figures = {"first_step_s": first[0] - me.create_time(), "train_call_to_step_s": first[0] - called,
               "peak_tree_rss_mb": peak["rss"] / 2**20, "peak_tree_pss_mb": peak["pss"] / 2**20,
               "peak_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "peak_training_mb": training_peak[0]}
    Path(out).write_text(json.dumps(figures))


def run_child(folder: Path, steps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        subprocess.run([sys.executable, __file__, "--child", str(folder), "--steps", str(steps),
                        "--out", str(out)], check=True, env=env)
        return json.loads(out.read_text())


def loader_images_per_s(folder: Path, batches: int) -> float:
    import genkit
    from genkit.data.datasets import image_dataset
    from genkit.train.loader import make_loader

    data = genkit.load_data(f"folder:{folder}", split="train")
    dataset = image_dataset(data, SIDE, 3, 0, "diffusion")
    args = SimpleNamespace(batch_size=BATCH, seed=0, num_workers=workers(), augment=True)
    it = iter(make_loader(dataset, args, 0, 1, 0, False))
    for _ in range(3):  # workers started and warm
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - start)


def model_images_per_s(steps: int) -> float:
    """The UNet's training throughput at batch 64: loss, backward and AdamW step."""
    import torch

    import genkit

    g = genkit.create("diffusion", image_size=SIDE, channels=3)
    unet = g.modules()["unet"]
    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    ctx = SimpleNamespace(models=g.modules(), generator=torch.Generator().manual_seed(0), step=0)
    batch = {"image": torch.rand(BATCH, 3, SIDE, SIDE) * 2 - 1}

    def step() -> None:
        loss = g.training_step(batch, ctx)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,50000")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.out)
        return
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.quick:
        args.sizes, args.steps = "2000,10000", 10
    small, large = (int(s) for s in args.sizes.split(","))
    figures = {}
    for n in (small, large):
        folder = image_folder(n)
        figures[n] = run_child(folder, args.steps)
        f = figures[n]
        print(f"{n} images: peak RSS of the trainer {f['peak_main_mb']:.0f} MB "
              f"({f['peak_training_mb']:.0f} MB before the final evaluation); of the trainer "
              f"and its loader workers {f['peak_tree_rss_mb']:.0f} MB RSS, "
              f"{f['peak_tree_pss_mb']:.0f} MB PSS; first step {f['first_step_s']:.1f} s after "
              f"start ({f['train_call_to_step_s']:.1f} s after train())", flush=True)
        print(f"RESULT data_scale_peak_rss_mb_n{n}={f['peak_main_mb']:.1f} MB")
        print(f"RESULT data_scale_peak_tree_pss_mb_n{n}={f['peak_tree_pss_mb']:.1f} MB")
        print(f"RESULT data_scale_first_step_s_n{n}={f['first_step_s']:.2f} s")
    ratio = {key: figures[large][key] / figures[small][key]
             for key in ("peak_main_mb", "peak_training_mb", "peak_tree_pss_mb", "first_step_s",
                         "train_call_to_step_s")}
    print(f"RESULT data_scale_rss_ratio={ratio['peak_main_mb']:.3f}")
    print(f"RESULT data_scale_training_rss_ratio={ratio['peak_training_mb']:.3f}")
    print(f"RESULT data_scale_tree_pss_ratio={ratio['peak_tree_pss_mb']:.3f}")
    print(f"RESULT data_scale_first_step_ratio={ratio['first_step_s']:.3f}")
    print(f"RESULT data_scale_train_call_to_first_step_ratio={ratio['train_call_to_step_s']:.3f}")
    loader = loader_images_per_s(image_folder(large), 10 if args.quick else 40)
    model = model_images_per_s(3 if args.quick else 10)
    print(f"loader with augmentation ({workers()} workers): {loader:.0f} images/s; "
          f"UNet training at batch {BATCH}: {model:.0f} images/s")
    print(f"RESULT data_scale_loader_images_per_s={loader:.1f} images/s")
    print(f"RESULT data_scale_model_images_per_s={model:.1f} images/s")
    print(f"RESULT data_scale_loader_over_model={loader / model:.2f}")


if __name__ == "__main__":
    main()
