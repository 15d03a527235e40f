"""genkit serve's web page in a real Chromium (Playwright driving Debian's ``chromium``):
pick the diffusion model, generate 4 labelled images and see them; pick gpt, generate
text and see it stream in. Saves the screenshot README shows (docs/images/serve.png)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="genkit serve needs the 'serve' extra")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                 "(pip install -e '.[dev]')")

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "serve.png"


def _chromium() -> str | None:
    candidates = [os.environ.get("GENKIT_CHROMIUM"), shutil.which("chromium"),
                  shutil.which("chromium-browser"), "/usr/bin/chromium"]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)),
                None)


CHROMIUM = _chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: apt-get install -y chromium "
                    "(scripts/setup.sh does it where apt-get exists), or set GENKIT_CHROMIUM")
def test_page_generates_images_and_text():
    import torch

    from genkit.serve.app import create_app, serve_in_thread
    from genkit.serve.models import load_models, resolve_sources

    torch.set_num_threads(1)
    table = load_models(resolve_sources((), ("diffusion", "gpt")), device="cpu")
    with serve_in_thread(create_app(table)) as url, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/")
            page.wait_for_selector("#model option[value=diffusion]", state="attached")

            page.select_option("#model", "diffusion")
            page.fill("#n", "4")
            page.fill("#seed", "3")
            page.fill("#label", "7")
            page.fill("#opt-steps", "20")
            page.click("#generate")
            page.wait_for_function("document.querySelectorAll('#grid img').length === 4 && "
                                   "[...document.querySelectorAll('#grid img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            sizes = page.eval_on_selector_all("#grid img", "imgs => imgs.map(i => i.naturalWidth)")
            assert sizes == [16, 16, 16, 16]
            captions = page.inner_text("#grid")
            assert captions.count("label 7") == 4
            assert page.get_attribute("#grid a", "download").endswith(".png")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))

            page.select_option("#model", "gpt")
            assert page.is_visible("#prompt") and not page.is_visible("#label")
            page.fill("#seed", "1")
            page.fill("#prompt", "The return statement")
            page.fill("#opt-max_new_tokens", "60")
            page.click("#generate")
            page.wait_for_function("document.getElementById('status').textContent"
                                   ".includes('sample')", timeout=30_000)
            text = page.inner_text("#texts .sample")
            assert text.startswith("The return statement") and len(text) > len("The return statement")
            assert "error" not in (page.get_attribute("#status", "class") or "")
            assert not errors, errors
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 5_000
