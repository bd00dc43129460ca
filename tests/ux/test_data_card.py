"""Item 3: the Markdown card has Hugging Face front matter, uses, limitations,
de-identification, attribution, field docs and an example; the HTML card is self-contained,
has its plots, and renders in headless Chromium without console errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

from curate.datacard.card import render, scan_shards
from curate.datacard.html import render_html
from curate.datacard.stats import example_record, scan_sizes

REQUIRE_CHROMIUM_ENV = "CURATE_REQUIRE_CHROMIUM"  # .ci/run sets it where it installs chromium
# Appended to a copy of the card: reports what the page shows through the console.
CHECK_SCRIPT = """<script>
const figures = [...document.querySelectorAll("figure.plot")];
const drawn = figures.filter(f => { const s = f.querySelector("svg");
  return s && s.getBoundingClientRect().width > 100 && s.getBoundingClientRect().height > 50; });
const images = [...document.images].filter(i => i.complete && i.naturalWidth > 0);
console.log("CURATE_CHECK plots=" + figures.length + " drawn=" + drawn.length +
            " images=" + images.length + "/" + document.images.length);
</script>"""


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_markdown_card_front_matter_and_sections(core_build: tuple[Path, str, str]) -> None:
    out, _, _ = core_build
    card = (out / "DATA_CARD.md").read_text()
    meta = _front_matter(card)
    manifest = json.loads((out / "manifest.json").read_text())
    assert meta["license"] == "cc-by-4.0"  # the rules keep only CC BY 4.0 in the demo corpus
    assert meta["size_categories"] == ["n<1K"] and "image-to-text" in meta["task_categories"]
    splits = {f["split"] for f in meta["configs"][0]["data_files"]}
    assert splits == set(manifest["splits"])
    assert "# Data card: core_pmc" in card
    assert "Figure-caption pairs from the generated PMC corpus" in card  # spec description
    for heading in (
        "## Intended uses",
        "## Out-of-scope uses",
        "## Limitations",
        "## De-identification",
        "## Licences and attribution",
        "## Example record",
        "## Fields",
    ):
        assert heading in card, heading
    assert "require attribution" in card
    # field docs come from the schema YAML; a `|` in a doc is escaped, not a new cell
    assert "| caption | string, required | full caption text" in card
    assert r"cloud \| legacy \| folder" in card
    example = card.split("## Example record", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    assert json.loads(example)["record_id"]


def _manifest_with(out: Path, **extra: object) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("deidentification", None)  # as in a manifest from before the key existed
    manifest.update(extra)
    return manifest


def test_deidentification_statement(core_build: tuple[Path, str, str]) -> None:
    out, _, _ = core_build
    scan = scan_shards(str(out))
    old = render(_manifest_with(out), scan)
    assert "does not record how identifiers were de-identified" in old
    demo = {"salt": "demo", "salt_fingerprint": "0a1b2c", "note": "generated demo data"}
    card = render(_manifest_with(out, deidentification=demo), scan)
    assert "Salt: **demo**, salt fingerprint `0a1b2c`" in card
    assert "demo salt, not for real data" in card
    page = render_html(_manifest_with(out, deidentification=demo), scan, scan_sizes(str(out)), None)
    assert "demo salt, not for real data" in page
    secret = {"salt": "secret", "salt_fingerprint": "ffee", "note": ""}
    assert "demo salt" not in render(_manifest_with(out, deidentification=secret), scan)


def test_decontamination_prefers_records_removed(core_build: tuple[Path, str, str]) -> None:
    out, _, _ = core_build
    scan = scan_shards(str(out))
    matches = {"total": 5, "by_benchmark": {"vqa_rad": 5}, "file": "attributes/m.jsonl"}
    assert "5 training records matched" in render(
        _manifest_with(out, benchmark_matches=matches), scan
    )
    matches["records_removed"] = 3
    card = render(_manifest_with(out, benchmark_matches=matches), scan)
    assert "3 training records matched evaluation items and were removed (5 matches)" in card


def test_html_card_is_self_contained_with_plots(core_build: tuple[Path, str, str]) -> None:
    out, _, _ = core_build
    page = (out / "DATA_CARD.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for title in ("Funnel", "Drops by reason", "Text length", "Image size and aspect ratio"):
        assert f'data-plot="{title}"' in page, title
    assert page.count("<svg") >= 6
    assert "data:image/png;base64," in page  # the example record's image
    # nothing fetched: no external URL in a src/href attribute
    assert 'src="http' not in page and 'href="http' not in page and "<script" not in page


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get(REQUIRE_CHROMIUM_ENV) == "1":
        pytest.fail(f"chromium is not installed but {REQUIRE_CHROMIUM_ENV}=1", pytrace=False)
    pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")


def test_html_card_renders_in_headless_chromium(
    core_build: tuple[Path, str, str], tmp_path: Path
) -> None:
    browser = _chromium()
    out, _, _ = core_build
    page = tmp_path / "card.html"
    page.write_text(
        (out / "DATA_CARD.html").read_text().replace("</body>", CHECK_SCRIPT + "</body>")
    )
    shot = tmp_path / "card.png"
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,3000",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    checks = [line for line in console if "CURATE_CHECK" in line]
    others = [line for line in console if "CURATE_CHECK" not in line]
    assert others == [], f"console messages from the card: {others}"
    assert len(checks) == 1, done.stderr[-2000:]
    expected_plots = (out / "DATA_CARD.html").read_text().count('class="plot"')
    assert f"plots={expected_plots} drawn={expected_plots}" in checks[0]
    assert "images=1/1" in checks[0]
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # a drawn page, not a blank one


def test_example_record_has_a_thumbnail(core_build: tuple[Path, str, str]) -> None:
    out, _, _ = core_build
    record = example_record(str(out))
    assert record is not None and record["split"] == "train"
    assert record["thumbnail_png"].startswith(b"\x89PNG")
