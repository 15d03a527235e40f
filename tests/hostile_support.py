"""Helpers and fixtures of the hostile-input suite (tests/hostile/).

Everything here goes through genkit's public surface only: the ``genkit`` console script
(a subprocess), ``genkit.cli.main`` inside a subprocess, and the Python API
(``genkit.create``, ``genkit.load``, ``Generator.train/sample/sample_to/save``). No test
imports a module under ``genkit/`` beyond that.

The rule every hostile case checks (see :func:`assert_one_line_error`):

- exit status 2 (or 0 where the documented behaviour is a warning);
- exactly one non-empty line on stderr, and no ``Traceback`` anywhere;
- nothing written, changed or deleted outside what the run owns (:func:`snapshot`,
  :func:`assert_nothing_written`, :func:`assert_changes_only_under`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Two shared cores: torch (here and in every child) runs one thread.
for _var, _value in (("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
                     ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                     ("HF_DATASETS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ[_var] = _value

PLUGIN_CONTROL_VARS = ("GENKIT_LOAD_PLUGINS", "GENKIT_DISABLE_PLUGINS", "GENKIT_STRICT_PLUGINS",
                       "GENKIT_TRACE_PLUGINS")
# The informational line ``genkit sample --plugin NAME`` prints before any work when it
# falls back to the plugin's shipped model. Only tests that use a shipped model allow it.
SHIPPED_MODEL_NOTICE = "Using the default "

# Tiny VAE used by most tests: trains and samples in well under a second.
TINY_VAE = {"image_size": 8, "base_width": 4, "latent_dim": 2, "num_classes": 10}
TINY_VAE_SETS = [arg for key, value in TINY_VAE.items() for arg in ("--set", f"{key}={value}")]
# Options that keep a CLI training run small and quiet.
QUICK_TRAIN = ["--batch-size", "8", "--log-with", "none", "--no-progress", "--device", "cpu"]


# ------------------------------------------------------------------------ subprocesses
@dataclasses.dataclass
class Result:
    """What a genkit process did."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    args: list[str]

    def describe(self) -> str:
        return (f"genkit {' '.join(self.args)}\n-> exit {self.code} in {self.seconds:.1f} s\n"
                f"--- stderr (tail) ---\n{self.stderr[-3000:]}\n"
                f"--- stdout (tail) ---\n{self.stdout[-1500:]}")


def genkit_command() -> list[str]:
    """The ``genkit`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("genkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "genkit"]


def child_env(extra: dict[str, str] | None = None,
              python_path: Iterable[str | Path] = ()) -> dict[str, str]:
    """The environment of a genkit child: offline, one thread, no plugin control set."""
    env = dict(os.environ)
    for var in PLUGIN_CONTROL_VARS:
        env.pop(var, None)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
                "PYTHONWARNINGS": "ignore", "COLUMNS": "200"})
    paths = [str(p) for p in python_path]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def run_genkit(*args: Any, cwd: str | Path | None = None, env: dict[str, str] | None = None,
               python_path: Iterable[str | Path] = (), timeout: float = 240,
               preexec_fn: Any = None) -> Result:
    """Run ``genkit ARGS`` to the end; return its exit status, stdout and stderr."""
    argv = [str(a) for a in args]
    start = time.perf_counter()
    proc = subprocess.run([*genkit_command(), *argv], cwd=cwd, capture_output=True, text=True,
                          errors="replace", env=child_env(env, python_path), timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, preexec_fn=preexec_fn)
    return Result(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start, argv)


def run_python(code: str, *, cwd: str | Path | None = None, env: dict[str, str] | None = None,
               python_path: Iterable[str | Path] = (), timeout: float = 240) -> Result:
    """Run a Python program (e.g. one that calls ``genkit.cli.main``) in a child process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, errors="replace",
                          env=child_env(env, python_path), timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start,
                  ["<python>"])


class Background:
    """A genkit process running in the background (its own session), output to files."""

    def __init__(self, args: Iterable[Any], cwd: Path, log_dir: Path,
                 env: dict[str, str] | None = None, python_code: str | None = None) -> None:
        self.args = [str(a) for a in args]
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.monotonic_ns()}"
        self.out_file = log_dir / f"bg-{stamp}.out"
        self.err_file = log_dir / f"bg-{stamp}.err"
        cmd = [sys.executable, "-c", python_code] if python_code else [*genkit_command(), *self.args]
        with open(self.out_file, "w") as out, open(self.err_file, "w") as err:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=child_env(env),
                                         start_new_session=True)
        self.pid = self.proc.pid
        self.start = time.monotonic()

    @property
    def stderr(self) -> str:
        return self.err_file.read_text(errors="replace")

    def descendants(self) -> list[int]:
        """Process ids of every live descendant (children, grandchildren, ...)."""
        return descendants_of(self.pid)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_all(self, also: Iterable[int] = ()) -> None:
        """SIGKILL this process and the descendants this test saw (by id, nothing else)."""
        pids = {self.pid, *also, *self.descendants()}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for pid in pids:  # reap whatever was ours and became a zombie
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def descendants_of(pid: int) -> list[int]:
    """Live descendants of ``pid`` from /proc (no third-party package needed)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            parents[int(entry.name)] = ppid
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.append(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ----------------------------------------------------------------------- assertions
def stderr_lines(result: Result, notice_ok: bool = False) -> list[str]:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if notice_ok:
        lines = [line for line in lines if not line.startswith(SHIPPED_MODEL_NOTICE)]
    return lines


def assert_no_traceback(result: Result) -> None:
    clean = "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert clean, "a Python traceback escaped:\n" + result.describe()


def assert_one_line_error(result: Result, *fragments: str, code: int = 2,
                          notice_ok: bool = False) -> str:
    """Exit ``code``, exactly one non-empty stderr line, no traceback; return the line.

    ``fragments`` must each appear in the line (case-insensitive). ``notice_ok`` lets the
    shipped-model notice precede the error (runs that use ``--plugin NAME`` without
    ``--checkpoint``).
    """
    assert_no_traceback(result)
    got = result.code
    assert got == code, f"expected exit {code}, got {got}:\n" + result.describe()
    lines = stderr_lines(result, notice_ok)
    count = len(lines)
    assert count == 1, f"expected exactly one line on stderr, got {count}:\n" + result.describe()
    line = lines[0]
    for fragment in fragments:
        found = fragment.lower() in line.lower()
        assert found, f"the error line does not mention {fragment!r}: {line}"
    return lines[0]


# ------------------------------------------------------------------------- snapshots
Snapshot = dict[str, tuple[Any, ...]]


def snapshot(root: str | Path) -> Snapshot:
    """Every path under ``root`` (not following links): files by size and sha256,
    directories, and links by target."""
    root = Path(root)
    tree: Snapshot = {}
    if not root.exists():
        return tree
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                tree[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                tree[rel] = ("dir",)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                tree[rel] = ("file", path.stat().st_size, digest)
    return tree


def diff(before: Snapshot, after: Snapshot) -> dict[str, list[str]]:
    return {"added": sorted(set(after) - set(before)),
            "removed": sorted(set(before) - set(after)),
            "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k])}


def _under(rel: str, prefixes: Iterable[str]) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in prefixes)


def assert_changes_only_under(before: Snapshot, after: Snapshot, *owned: str) -> None:
    """Nothing outside the ``owned`` relative paths was added, removed or changed."""
    changes = diff(before, after)
    stray = {kind: [p for p in paths if not _under(p, owned)] for kind, paths in changes.items()}
    assert not any(stray.values()), f"changed outside {owned or 'nothing'}: {stray}"


BOOKKEEPING_PREFIX = ".genkit"  # hidden files genkit may keep in its own folders (a lock)


def assert_nothing_written(before: Snapshot, after: Snapshot, *outs: str) -> None:
    """A refused run changed nothing: no file added, removed or changed anywhere.

    ``outs`` are folders the run owns (its new ``--out``, or a genkit run directory it
    was pointed at); in them directories may appear and genkit's hidden bookkeeping files
    (``.genkit*``, e.g. a lock) may come, change or go, but nothing half-written (no
    checkpoint, sample, manifest or metrics). A folder of the user's own files is never an ``out``
    here: a refused run leaves it byte for byte as it was.
    """
    def bookkeeping(path: str) -> bool:
        return _under(path, outs) and Path(path).name.startswith(BOOKKEEPING_PREFIX)

    changes = diff(before, after)
    removed = [p for p in changes["removed"] if not bookkeeping(p)]
    assert not removed, f"deleted: {removed}"
    changed = [p for p in changes["changed"] if not bookkeeping(p)]
    assert not changed, f"changed: {changed}"
    bad = [p for p in changes["added"]
           if not (bookkeeping(p) or (_under(p, outs) and after[p] == ("dir",)))]
    assert not bad, f"written by a refused run: {bad}"


# --------------------------------------------------------------------------- files
def write_png(path: Path, size: int = 8, value: int = 0, mode: str = "L") -> Path:
    """A small valid PNG (a gradient, shifted by ``value``)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    pixels = (np.arange(int(np.prod(shape))).reshape(shape) * 7 + value * 31) % 256
    Image.fromarray(pixels.astype("uint8"), mode=mode).save(path)
    return path


def edit_json(path: Path, change: Any) -> dict[str, Any]:
    """Apply ``change(data)`` (which edits in place or returns a new value) to a JSON file."""
    data = json.loads(path.read_text())
    new = change(data)
    data = data if new is None else new
    path.write_text(json.dumps(data, indent=2) if not isinstance(data, str) else data)
    return data


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ------------------------------------------------------------------------ plugins
def make_plugin(site: Path, name: str, source: str, *, generators: bool = False) -> Path:
    """A real installed distribution ``genkit-hostile-NAME`` on ``site``: a ``*.dist-info``
    folder with a ``genkit`` entry point beside the module ``genkit_hostile_NAME`` (as
    tests/fixtures/ does, built here so each case is self-contained)."""
    module = f"genkit_hostile_{name}"
    dist = f"genkit-hostile-{name}"
    info = site / f"{module}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n"
                                   "Requires-Dist: genkit>=0.1\n")
    (info / "entry_points.txt").write_text(f"[genkit]\n{name} = {module}\n")
    (info / "RECORD").write_text("")
    package = site / module
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(source))
    return site


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny VAE models built with the public API (read-only; copy before changing):

    - ``run``: a run directory (2 steps on digits, checkpoints at steps 1 and 2, metrics);
    - ``a``: its final model (``run/model``), the checkpoint most tests sample from;
    - ``b``: another model of the same shape (another seed), for mixing attempts;
    - ``samples_a``: ``a``'s ``sample_to(n=2, seed=0)`` output folder.
    """
    import genkit

    root = tmp_path_factory.mktemp("models")
    g = genkit.create("vae", seed=0, **TINY_VAE)
    g.train("digits", steps=2, batch_size=8, out=root / "run", checkpoint_every=1,
            log_every=1, log_with="none", progress=False, device="cpu")
    b = genkit.create("vae", seed=1, **TINY_VAE)
    b.train("digits", steps=2, batch_size=8, log_with="none", progress=False, device="cpu")
    b.save(root / "b")
    a = genkit.load(root / "run" / "model", device="cpu")
    a.sample_to(root / "samples_a", n=2, seed=0, progress=False)
    return {"run": root / "run", "a": root / "run" / "model", "b": root / "b",
            "samples_a": root / "samples_a"}


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """An empty working folder, the current directory of the test and of its children."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def ckpt(models, work) -> Path:
    """A private copy of the tiny checkpoint ``a`` at ``work/ck``."""
    return copy_tree(models["a"], work / "ck")


@pytest.fixture
def run_copy(models, work) -> Path:
    """A private copy of the tiny run directory at ``work/run``."""
    return copy_tree(models["run"], work / "run")


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory) -> Path:
    """Eight small valid PNGs (read-only: copy before adding files)."""
    root = tmp_path_factory.mktemp("digit_folder") / "images"
    for i in range(8):
        write_png(root / f"img{i}.png", value=i)
    return root


@pytest.fixture
def image_folder(digit_folder, work) -> Path:
    return copy_tree(digit_folder, work / "images")


@contextlib.contextmanager
def background(*args: Any, cwd: Path, **kwargs: Any) -> Iterator[Background]:
    """A background genkit process, killed (with its descendants) when the block ends."""
    proc = Background(args, cwd=cwd, log_dir=cwd.parent / "logs", **kwargs)
    seen: set[int] = set()
    try:
        yield proc
    finally:
        seen.update(proc.descendants())
        proc.kill_all(seen)
