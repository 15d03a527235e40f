"""Bad image input: each case is one line (a skipped file's warning, or an error), never a
traceback, and nothing is written."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import genkit
from genkit.data import decode
from genkit.data.datasets import image_dataset
from genkit.errors import DataError
from genkit.train.loader import make_loader


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb(path: Path, side: int = 20000) -> None:
    """A small PNG that decodes to side x side 1-bit pixels: past PIL's bomb limit."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1,
                                                                       0, 0, 0, 0))
                     + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))


def noise_png(size: int = 32) -> bytes:
    buf = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


BAD = {
    "corrupt": lambda p: p.write_bytes(bytes(range(256)) * 3),
    "zero_byte": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(noise_png()[: len(noise_png()) * 6 // 10]),
    "decompression_bomb": bomb,
}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(decode, "_WARNED", set())


def good_folder(root: Path, n: int = 16) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"img{i:02d}.png").write_bytes(noise_png(8 + i % 3))
    return root


def warnings_naming(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if name in line]


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_file_is_skipped_with_one_warning(tmp_path, capfd, kind, workers):
    root = good_folder(tmp_path / "imgs")
    BAD[kind](root / f"bad_{kind}.png")
    data = genkit.load_data(f"folder:{root}", split="all")
    ds = image_dataset(data, 8, 3, 0, "test")
    args = SimpleNamespace(batch_size=len(ds), seed=0, num_workers=workers, augment=False)
    batches = iter(make_loader(ds, args, 0, 1, 0, False))
    for _ in range(3):  # three epochs: every file is read three times
        assert next(batches)["image"].shape == (len(ds), 3, 8, 8)
    materialised = genkit.load_data(f"folder:{root}", split="all").images  # eval's path
    assert len(materialised) == len(ds)
    err = capfd.readouterr().err
    lines = warnings_naming(err, f"bad_{kind}.png")
    assert len(lines) == 1, err
    assert lines[0].startswith(f"Warning: skipped {root / f'bad_{kind}.png'}: ")
    assert "Traceback" not in err


def test_a_folder_of_only_bad_files_is_one_line(tmp_path, capfd):
    root = tmp_path / "imgs"
    root.mkdir()
    for kind in ("corrupt", "truncated"):
        BAD[kind](root / f"{kind}.png")
    data = genkit.load_data(f"folder:{root}", split="all")
    with pytest.raises(DataError, match="no image of the 2 in this data set could be decoded"):
        image_dataset(data, 8, 3, 0, "test").__getitems__([0])
    args = SimpleNamespace(batch_size=2, seed=0, num_workers=1, augment=False)
    with pytest.raises(DataError) as info:  # raised in a worker: still its one line
        next(iter(make_loader(image_dataset(data, 8, 3, 0, "t"), args, 0, 1, 0, False)))
    assert str(info.value) == "no image of the 2 in this data set could be decoded"
    for p in root.glob("*.png"):
        p.unlink()
    (root / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="holds no images"):
        genkit.load_data(f"folder:{root}")


def test_images_beside_class_folders_are_refused(tmp_path):
    good_folder(tmp_path / "imgs" / "cats", 3)
    good_folder(tmp_path / "imgs" / "dogs", 3)
    (tmp_path / "imgs" / "stray.png").write_bytes(noise_png())
    with pytest.raises(DataError, match=r"has images beside its class sub-folders \(stray.png\)"):
        genkit.load_data(f"folder:{tmp_path / 'imgs'}")


def test_folder_errors_are_one_line(tmp_path):
    (tmp_path / "file.png").write_bytes(noise_png())
    good_folder(tmp_path / "meta", 2)
    (tmp_path / "meta" / "metadata.jsonl").write_text('{"file_name": "img00.png"}\n{oops\n')
    for spec, message in ((f"folder:{tmp_path / 'file.png'}", "is not a folder"),
                          (f"folder:{tmp_path / 'meta'}", "line 2 is not JSON"),
                          ("folder:", "needs a path")):
        with pytest.raises(DataError, match=message) as info:
            genkit.load_data(spec)
        assert "\n" not in str(info.value)
    (tmp_path / "meta" / "metadata.jsonl").write_text('{"file_name": "gone.png"}\n')
    with pytest.raises(DataError, match="'gone.png' does not exist"):
        genkit.load_data(f"folder:{tmp_path / 'meta'}")
