"""Evaluation results as typed records, their JSON form and their printed report.

``EvalResult.as_dict()`` is what ``genkit eval --json`` prints; ``report()`` is the table
``genkit eval`` prints; ``summary()`` is the flat record kept in ``genkit.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass
class ImageScores:
    """One row of an image evaluation: figures of one image set against the reference."""

    fd: float
    fd_std: float | None  # spread of FD across draws (None for a single draw)
    precision: float
    recall: float
    density: float
    draws: int


@dataclasses.dataclass
class ClassCoverage:
    """How one image set spreads over the classes of the feature classifier.

    ``collapsed`` is True when fewer than half the classes appear or one class takes more
    than half of the samples (more than half way from its share of the data to all, for a
    class the data itself gives more than half to): signs of mode collapse. ``effective_classes`` is
    ``exp(entropy)`` of the shares (``num_classes`` when balanced, 1 when collapsed).
    """

    classes_present: int
    num_classes: int
    effective_classes: float
    top_class: str
    top_share: float
    collapsed: bool
    shares: dict[str, float]
    label_accuracy: float | None = None  # share classified as the label asked for


@dataclasses.dataclass
class EvalResult:
    """What :func:`genkit.eval.evaluate.evaluate` measured.

    ``rows`` holds :class:`ImageScores` by row (``real``, ``model``, ``noise``) for images,
    and figure dicts (``model``: the generator's own, ``unigram``) for text.
    """

    modality: str  # "image" | "text"
    generator: str
    checkpoint: str | None
    data: str
    reference: dict[str, Any]
    rows: dict[str, Any]
    seconds: float = 0.0
    date: str = ""
    recorded: str | None = None  # the genkit.json written
    record_attempted: bool = False  # recording was asked for (recorded None: not writable)
    # images
    n: int | None = None
    seed: int | None = None
    draws: int | None = None
    image_size: int | None = None
    conditioning: str | None = None
    features: dict[str, Any] | None = None
    real_sampling: str | None = None
    coverage: dict[str, ClassCoverage] | None = None
    class_fd: dict[str, dict[str, float]] | None = None  # class -> {"model", "real"} FD
    # text
    beats_baseline: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``genkit eval --json``): fields that do not apply are left out."""
        out: dict[str, Any] = {"generator": self.generator, "checkpoint": self.checkpoint,
                               "modality": self.modality, "data": self.data}
        if self.modality == "image":
            out.update(n=self.n, seed=self.seed, draws=self.draws, image_size=self.image_size,
                       conditioning=self.conditioning, features=self.features,
                       reference=self.reference, real_sampling=self.real_sampling,
                       rows={k: dataclasses.asdict(v) for k, v in self.rows.items()})
            if self.coverage is not None:
                out["coverage"] = {k: _drop_none(dataclasses.asdict(v))
                                   for k, v in self.coverage.items()}
            if self.class_fd is not None:
                out["class_fd"] = self.class_fd
        else:
            out.update(reference=self.reference, rows=self.rows,
                       beats_baseline=self.beats_baseline)
        out.update(seconds=self.seconds, date=self.date)
        if self.record_attempted:
            out["recorded"] = self.recorded
        return out

    def summary(self) -> dict[str, Any]:
        """The flat figures recorded in ``genkit.json`` under ``"evaluation"`` (what the
        model card and ``genkit info`` list), with the per-row details under ``details``."""
        flat: dict[str, Any] = {"data": self.data, "date": self.date}
        full = self.as_dict()
        if self.modality == "text":
            model = self.rows["model"]
            flat.update({k: model[k] for k in ("val_loss", "val_ppl", "val_bpc") if k in model})
            flat["unigram_bpc"] = self.rows["unigram"]["val_bpc"]
        else:
            model = self.rows["model"]
            flat.update({"n": self.n, "features": (self.features or {}).get("kind"),
                         "fd": model.fd, "fd_real": self.rows["real"].fd,
                         "fd_noise": self.rows["noise"].fd, "precision": model.precision,
                         "recall": model.recall, "density": model.density})
            coverage = (self.coverage or {}).get("model")
            if coverage:
                flat["classes_present"] = coverage.classes_present
                flat["collapsed"] = coverage.collapsed
        flat["details"] = {k: full[k] for k in ("rows", "coverage", "class_fd", "features",
                                                "reference") if k in full}
        return flat

    def report(self) -> str:
        """A readable table: the model between the floor and the baseline."""
        lines = _format_text(self) if self.modality == "text" else _format_images(self)
        return "\n".join(lines + _recorded_line(self))


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def _format_images(result: EvalResult) -> list[str]:
    feats = result.features or {}
    if feats.get("kind") == "classifier":
        described = (f"small CNN classifier trained on half the {result.data} train split "
                     f"(test accuracy {feats.get('test_accuracy', 0):.1%}; {feats.get('path')})")
    else:
        described = f"{feats.get('model_type')} model at {feats.get('path')} (pooled output)"
    lines = [f"{result.generator} on {result.data}: n={result.n}, seed {result.seed}, "
             f"{result.image_size}x{result.image_size} images, conditioning: "
             f"{result.conditioning}",
             f"features:  {described}",
             f"reference: the whole {result.data} test split ({result.reference['size']} "
             "images, fixed)", ""]
    coverage = result.coverage or {}
    model_draws = result.rows["model"].draws
    names = {"real": f"real (held-out train half, {result.draws} draws)",
             "model": "model" if model_draws == 1 else f"model ({model_draws} draws)",
             "noise": f"noise (uniform, {result.draws} draws)"}
    header = ["", "FD (lower better)", "precision", "recall", "density"]
    if coverage:
        header += ["classes", "top class"]
    rows = []
    for key in ("real", "model", "noise"):
        row = result.rows[key]
        fd = _num(row.fd) + (f" ± {_num(row.fd_std, 2)}" if row.fd_std else "")
        cells = [names[key], fd, f"{row.precision:.3f}", f"{row.recall:.3f}", f"{row.density:.3f}"]
        cov = coverage.get(key)
        if coverage:
            cells += ([f"{cov.classes_present}/{cov.num_classes}",
                       f"{cov.top_class} ({cov.top_share:.0%})"] if cov else ["", ""])
        rows.append(cells)
    lines += _table(header, rows)
    lines.append("")
    lines.append("real: n images of the half of the train split the classifier never saw "
                 "(the floor); noise: the baseline. FD depends on n: compare at equal n only.")
    lines.append("precision and density judge samples one at a time: junk the features map "
                 "into the data's region (see noise) passes them; read them with recall and FD.")
    if result.class_fd:
        lines.append("FD per class, model / real (each against the test images of that "
                     "class): " + ", ".join(f"{name} {_num(v['model'], 3)} / {_num(v['real'], 3)}"
                                            for name, v in result.class_fd.items()))
    model_cov = coverage.get("model")
    if model_cov:
        if model_cov.label_accuracy is not None:
            lines.append(f"label agreement: {model_cov.label_accuracy:.1%} of samples are "
                         "classified as the label asked for")
        if model_cov.collapsed:
            lines.append(f"WARNING: coverage collapsed: {model_cov.classes_present} of "
                         f"{model_cov.num_classes} classes appear, class "
                         f"{model_cov.top_class} takes {model_cov.top_share:.0%} "
                         "(mode collapse?)")
    return lines


def _format_text(result: EvalResult) -> list[str]:
    model, unigram = result.rows["model"], result.rows["unigram"]
    lines = [f"{result.generator} on {result.data}: held-out test split "
             f"({result.reference['size']} characters)", ""]
    rows = [["model", _num(model.get("val_loss")), _num(model.get("val_ppl")),
             f"{model['val_bpc']:.4f}"],
            ["unigram (chars of the train split)", "-", f"{unigram['char_ppl']:.4g} per char",
             f"{unigram['val_bpc']:.4f}"]]
    lines += _table(["", "loss (nats/token)", "perplexity", "bits/char (lower better)"], rows)
    verdict = "beats" if result.beats_baseline else "does NOT beat"
    lines += ["", f"the model {verdict} the unigram baseline "
              f"({model['val_bpc']:.3f} vs {unigram['val_bpc']:.3f} bits/char)"]
    return lines


def _recorded_line(result: EvalResult) -> list[str]:
    if result.checkpoint is None or not result.record_attempted:
        return []
    if result.recorded:
        return [f"recorded in {result.recorded} and its README.md"]
    return [f"not recorded: {result.checkpoint} is not writable"]
