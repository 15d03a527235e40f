"""Every generator genkit ships, the test toy and the example third-party plugin pass the
conformance kit (genkit.testing.check_generator) on tiny CPU configs."""

from __future__ import annotations

import importlib.util
import math
from importlib import metadata

import pytest

from genkit.testing import check_generator

GPT_TINY = {"tokenizer": "char", "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}
GPT_OPTIONS = {"steps": 10, "batch_size": 8, "data": "text:{corpus}",
               "sample_options": {"max_new_tokens": 8, "temperature": 1.0},
               "bad_configs": [{"n_embd": 15}, {"tokenizer": "words"}]}

# name, tiny config, check options (steps, sample options, configs that must be rejected)
CASES = [
    pytest.param("toy", {"hidden": 32}, {
        "steps": 30, "batch_size": 16, "expect_lower_loss": True,
        "bad_configs": [{"hidden": 0}]}, id="toy"),
    pytest.param("diffusion", {
        "image_size": 8, "block_out_channels": (8, 16), "norm_num_groups": 4,
        "num_train_timesteps": 50}, {
        "steps": 3, "sample_options": {"steps": 2},
        "bad_configs": [{"norm_num_groups": 3}, {"image_size": 7}]}, id="diffusion"),
    pytest.param("gan", {"arch": "mlp", "image_size": 8, "latent_dim": 8, "base_width": 8}, {
        "steps": 3, "bad_configs": [{"arch": "transformer"}, {"image_size": 1000}]}, id="gan"),
    pytest.param("vae", {"image_size": 8, "latent_dim": 4, "base_width": 8}, {
        "steps": 20, "batch_size": 16, "expect_lower_loss": True,
        "bad_configs": [{"likelihood": "poisson"}, {"image_size": 12}]}, id="vae"),
    pytest.param("gpt", GPT_TINY, GPT_OPTIONS, id="gpt"),
    pytest.param("flow", {"hidden": 8, "num_blocks": 1}, {
        "steps": 10, "batch_size": 16, "expect_lower_loss": True,
        "bad_configs": [{"image_size": 5}, {"logit_alpha": 0.5}]}, id="flow"),
]

# what must exist for each family to be checked (plugins are written in parallel)
NEEDS = {"diffusion": "genkit_diffusion.generator", "gan": "genkit_gan.generator",
         "vae": "genkit_vae.generator", "gpt": "genkit_gpt.generator",
         "flow": "genkit_flow.generator"}

CORPUS = ("The return statement leaves the current function call with the expression "
          "list (or None) as return value. ") * 40


def _skip_unless_ready(name: str) -> None:
    if name == "flow":
        try:
            metadata.distribution("genkit-plugin-flow")
        except metadata.PackageNotFoundError:
            pytest.skip("genkit-plugin-flow is not installed: "
                        "pip install ./examples/genkit-plugin-flow")
    module = NEEDS.get(name)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist yet: the {name} plugin is not written")


@pytest.mark.parametrize("name, config, options", CASES)
def test_generator_passes_the_conformance_kit(toy_registry, tmp_path, name, config, options):
    _skip_unless_ready(name)
    options = dict(options)
    if "{corpus}" in options.get("data", ""):
        corpus = tmp_path / "corpus.txt"
        corpus.write_text(CORPUS, encoding="utf-8")
        options["data"] = options["data"].format(corpus=corpus)
    report = check_generator(name, config=config, workdir=tmp_path / "work", **options)
    assert report.name == name and report.steps == options["steps"]
    assert math.isfinite(report.final_loss)
    assert len(report.checks) == 6, report.checks
