"""``genkit push`` (a checkpoint to the Hugging Face Hub) and ``genkit export --merge``.

``push`` publishes exactly what ``genkit.load`` and the plain libraries read: the weights
``genkit.json`` records (checked against their sha256 first, so a damaged checkpoint is
never published), the config and tokenizer files beside them, ``genkit.json`` itself and
a model card rendered now with the repo's name in its snippets. Training state, lock and
temporary files stay home. The checkpoint folder is only read: the files are staged as
links in a temporary folder, and ``HfApi.upload_folder`` sends them as one commit, so the
repo gets all of them or none. Offline (``HF_HUB_OFFLINE``) it stops before any request.

``export --merge`` folds a LoRA adapter into its base and writes a plain checkpoint
(``AutoModelForCausalLM`` / ``DiffusionPipeline`` open it), atomically, into a folder that
must be new or empty.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import click

from genkit.errors import CheckpointError, GenkitError
from genkit.hub import hub_offline, parse_model_id
from genkit.store.checkpoint import (
    TRAINING_STATE,
    checkpoint_identity,
    read_manifest,
    resolve_checkpoint_dir,
    save_checkpoint,
)
from genkit.store.modelcard import render_model_card

#: files of a checkpoint that never go to the Hub
_KEEP_HOME = (".genkit.lock",)


def files_to_push(directory: Path) -> list[Path]:
    """The checkpoint's files to publish, relative, sorted: everything but the training
    state, hidden files (locks, temporaries) and README.md (rendered anew)."""
    files = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not path.is_file() or rel.parts[0] == TRAINING_STATE or rel.name == "README.md" \
                or any(part.startswith(".") for part in rel.parts) or rel.name in _KEEP_HOME:
            continue
        files.append(rel)
    return files


def _stage(directory: Path, files: list[Path], card: str, stage: Path) -> None:
    """Links to ``files`` (copies where links are not allowed) and the card, in ``stage``."""
    for rel in files:
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink((directory / rel).resolve(), target)
        except OSError:
            shutil.copy2(directory / rel, target)
    (stage / "README.md").write_text(card, encoding="utf-8")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--dry-run", is_flag=True, help="List the files and print the card; send nothing.")
@click.option("--message", default=None, help="Commit message.")
def push(path: Path, repo_id: str, private: bool, dry_run: bool, message: str | None) -> None:
    """Publish a checkpoint to the Hugging Face Hub as ORG/NAME, with its model card.

    Needs a token with write access (HF_TOKEN, or 'hf auth login').

    \b
    Examples:
      genkit push runs/d my-org/digits-diffusion --dry-run
      genkit push runs/g/model my-org/pydoc-gpt --private
    """
    model_id = parse_model_id(repo_id)
    if model_id is None or model_id.revision:
        raise click.BadParameter(f"{repo_id!r} is not a Hub repo id ORG/NAME", param_hint="REPO_ID")
    directory = resolve_checkpoint_dir(path)
    manifest = read_manifest(directory)
    checkpoint_identity(directory)  # every weight file checked against its sha256
    files = files_to_push(directory)
    card = render_model_card(manifest, model_id.repo)
    if dry_run:
        size = sum((directory / rel).stat().st_size for rel in files)
        click.echo(f"would push {directory} to {model_id.repo} "
                   f"({'private' if private else 'public'}): {len(files) + 1} files, "
                   f"{size / 1e6:.2f} MB")
        for rel in [*files, Path("README.md")]:
            bytes_ = len(card.encode()) if rel.name == "README.md" and len(rel.parts) == 1 \
                else (directory / rel).stat().st_size
            click.echo(f"  {rel.as_posix()}  ({bytes_} bytes)")
        click.echo("--- README.md ---")
        click.echo(card)
        return
    if hub_offline():
        raise GenkitError(f"cannot push to {model_id.repo}: HF_HUB_OFFLINE is set, so genkit "
                          "sends nothing to the Hub; unset it to push (nothing was created)")
    _upload(directory, files, card, model_id.repo, private,
            message or f"Upload genkit {manifest['generator']} model")


def _upload(directory: Path, files: list[Path], card: str, repo: str, private: bool,
            message: str) -> None:
    from huggingface_hub import HfApi, get_token

    if not get_token():
        raise GenkitError(f"cannot push to {repo}: no Hugging Face token; set HF_TOKEN or run "
                          "'hf auth login' (nothing was created)")
    api = HfApi()
    try:
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
    except Exception as exc:  # network, auth, name taken by another type
        raise GenkitError(f"cannot create {repo} on the Hub: {_first_line(exc)} "
                          "(nothing was created)") from None
    with tempfile.TemporaryDirectory(prefix="genkit-push-") as stage:
        _stage(directory, files, card, Path(stage))
        try:
            commit = api.upload_folder(repo_id=repo, folder_path=stage, commit_message=message,
                                       repo_type="model")
        except Exception as exc:
            raise GenkitError(f"the upload to {repo} failed: {_first_line(exc)}; nothing was "
                              "committed (the repo exists), run the command again") from None
    click.echo(f"pushed {len(files) + 1} files to {getattr(url, 'url', url)} "
               f"({getattr(commit, 'oid', '') or 'one commit'})", err=True)


def _first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--merge", is_flag=True, help="Merge the LoRA adapter into its base (required).")
@click.option("--device", default="cpu", show_default=True)
def export(checkpoint: Path, out: Path, merge: bool, device: str) -> None:
    """Write CHECKPOINT's LoRA adapter merged into its base as a plain model in OUT.

    OUT must not exist or be empty; it is written whole or not at all. The result opens
    with AutoModelForCausalLM (gpt) or DiffusionPipeline (diffusion), and with genkit.

    \b
    Example:
      genkit export --merge runs/lora merged/
    """
    from genkit.api import load  # lazy: the API imports torch

    if not merge:
        raise click.UsageError("give --merge: genkit export writes a LoRA checkpoint merged "
                               "into its base")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} exists and is not an empty folder; genkit export writes "
                              "only into a new or empty folder")
    generator = load(checkpoint, device=device)
    if not getattr(generator.config, "lora_rank", 0):
        raise CheckpointError(f"{checkpoint} is not a LoRA checkpoint ({generator.name}); there "
                              "is nothing to merge")
    save_checkpoint(generator.merge_lora(), out)  # a temporary sibling renamed into place
    click.echo(f"wrote {out}: {generator.name} merged into its base "
               f"{getattr(generator.config, 'base', '')}", err=True)
