"""``genkit encode`` and ``genkit decode``: the VAE's latents as ``.npy`` files.

``encode`` writes the posterior means of images, one row per image in file-name order,
as a float32 ``(N, latent_dim)`` array; ``decode`` turns such an array back into images.
A class-conditional VAE encodes and decodes under a label: ``--label`` for all, else
``encode`` infers each image's (the class with the best ELBO) and writes them beside
the latents (``NAME.labels.npy``), where ``decode`` finds them. Files are written whole
(atomically) and never over a file that is already there.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import click

from genkit.plugin import ConfigError, atomic_write_bytes

DEFAULT = Path(__file__).parent / "default"


def _load(checkpoint: Path | None, device: str) -> Any:
    from genkit.plugin import load

    generator = load(checkpoint or DEFAULT, device=device)
    if not callable(getattr(generator, "best_labels", None)):
        raise ConfigError(f"{checkpoint} is a {generator.name} checkpoint; encode and decode "
                          "take a vae checkpoint")
    return generator


def _labels_file(latents: Path) -> Path:
    return latents.with_name(latents.name.removesuffix(".npy") + ".labels.npy")


def _write_npy(path: Path, array: Any) -> None:
    import numpy as np

    if path.exists():
        raise ConfigError(f"{path} already exists; genkit never replaces a file it did not "
                          "write: choose another path")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


_checkpoint = click.option("--checkpoint", type=click.Path(path_type=Path),
                           help="A vae checkpoint (default: the vae shipped with genkit).")
_device = click.option("--device", default="auto", show_default=True)


@click.command()
@_checkpoint
@click.option("--images", required=True, type=click.Path(path_type=Path),
              help="An image file or a folder of them (rows in file-name order).")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The .npy file of latents to write, (N, latent_dim) float32.")
@click.option("--label", type=int, help="Class of every image (conditional VAEs; default: inferred).")
@_device
def encode(checkpoint: Path | None, images: Path, out: Path, label: int | None,
           device: str) -> None:
    """Encode images into VAE latents (posterior means) in a .npy file.

    \b
    Example:
      genkit encode --images digits/ --out z.npy
      genkit decode --latents z.npy --out rebuilt/
    """
    import numpy as np

    from genkit.plugin import read_images

    if out.suffix != ".npy":
        raise ConfigError(f"--out {out} must end in .npy")
    vae = _load(checkpoint, device)
    found = read_images(images)
    x = vae._as_tensor([im for _, im in found])  # (N, C, S, S) at the model's format
    labels = None
    if vae.config.num_classes:
        labels = vae._labels(label, x.shape[0]) if label is not None else vae.best_labels(x)
    latents = vae.encode(x, labels).float().cpu().numpy().astype(np.float32)  # (N, Z)
    _write_npy(out, latents)
    click.echo(f"encoded {len(found)} images -> {out} {latents.shape}", err=True)
    if labels is not None and label is None:
        _write_npy(_labels_file(out), labels.cpu().numpy().astype(np.int64))
        click.echo(f"labels (inferred) -> {_labels_file(out)}", err=True)


@click.command()
@_checkpoint
@click.option("--latents", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="A .npy file of latents, (N, latent_dim).")
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="A new or empty folder for NNNNNN.png and grid.png.")
@click.option("--label", type=int, help="Class of every image (conditional VAEs; default: "
              "LATENTS.labels.npy beside the latents).")
@_device
def decode(checkpoint: Path | None, latents: Path, out: Path, label: int | None,
           device: str) -> None:
    """Decode VAE latents (a .npy file) into images."""
    import numpy as np

    from genkit.plugin import make_grid, save_png

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} must be a new or empty folder (genkit never replaces "
                          "files it did not write)")
    vae = _load(checkpoint, device)
    z = _read_npy(latents)
    labels: Any = label
    if vae.config.num_classes and label is None:
        if not _labels_file(latents).is_file():
            raise ConfigError(f"this vae is class-conditional: give --label, or keep "
                              f"{_labels_file(latents).name} (written by genkit encode) beside "
                              "the latents")
        labels = _read_npy(_labels_file(latents)).astype(np.int64)
    images = vae.decode(z, labels)
    for i, image in enumerate(images):
        save_png(image, out / f"{i:06d}.png")
    save_png(make_grid(images[:64]), out / "grid.png")
    click.echo(f"decoded {len(images)} images -> {out}", err=True)


def _read_npy(path: Path) -> Any:
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as a .npy array: {' '.join(str(exc).split())}") \
            from None
