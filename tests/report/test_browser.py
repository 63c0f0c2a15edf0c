"""The report in a real browser: headless Debian chromium parses it and decodes every figure.

Skipped when ``/usr/bin/chromium`` is missing (``apt-get install -y chromium``; CI
installs it). The report itself has no script; to read ``naturalWidth`` of every image
the test renders a *copy* with a small script appended and dumps the DOM after load.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from ._html import parse_report

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="/usr/bin/chromium missing (apt-get install -y chromium)"
)
SECTION_IDS = ["ranking", "dice", "detection", "curves", "imbalance", "landscape", "examples"]
BROKEN = '<img src="data:image/png;base64,iVBORw0KGgoAAAA">'
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map((i) => [i.complete, i.naturalWidth, i.naturalHeight]);
  document.body.setAttribute("data-decoded", JSON.stringify(images));
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",  # run until load has fired (virtual time, not wall)
        *args,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env={"HOME": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_dom_has_sections_tables_and_decoded_figures(built_report: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", built_report.as_uri()).stdout
    parsed = parse_report(dom)
    assert parsed.order == SECTION_IDS
    assert all(parsed.sections[s].unavailable is None for s in SECTION_IDS)
    ranking = parsed.sections["ranking"].tables[0]
    assert ranking[0][:2] == ["#", "method"] and len(ranking) == 3  # header + 2 methods
    n_images = sum(len(parsed.sections[s].images) for s in SECTION_IDS)
    assert n_images == 7

    # the probe must see a broken image: one corrupt PNG is appended as a control
    probed = tmp_path / "probed.html"
    probed.write_text(
        built_report.read_text(encoding="utf-8").replace("</body>", BROKEN + PROBE + "</body>"),
        encoding="utf-8",
    )
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri()).stdout
    body = next(attrs for tag, attrs in parse_report(dom).tags if tag == "body")
    *decoded, control = json.loads(body["data-decoded"])
    assert len(decoded) == n_images
    assert all(complete and width > 0 and height > 0 for complete, width, height in decoded)
    assert control[1] == 0


def test_screenshot_is_not_blank(built_report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", built_report.as_uri())
    image = Image.open(shot)
    assert image.size == (1280, 2400)
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 22)) > 100
