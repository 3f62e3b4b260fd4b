"""results/report.html: self-contained, and rendered by a real browser (headless Chromium) with its tables and
figures; the browser test skips where Chromium is not installed."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from lra.tables.build import Settings, build
from tests.tables.test_efficiency import write_bench_fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def count(self, tag: str) -> int:
        return sum(t == tag for t, _ in self.tags)

    def images(self) -> list[str]:
        return [attrs["src"] for tag, attrs in self.tags if tag == "img"]


@pytest.fixture(scope="module")
def report(scenario_records: Path, presets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    settings = Settings(runs_dir=scenario_records, bench_dir=write_bench_fixture(root / "bench"),
                        tables_dir=root / "tables", report=root / "report.html")
    build(settings, presets)
    return settings.report


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(|<script|<link|@import""", text)
    page = Elements()
    page.feed(text)
    assert page.count("table") == 7  # Table 1, parameters, 1 benchmark, Table 2, training speed, 2nd ref., runs
    images = page.images()
    # accuracy per backend and task, training curves, and throughput/memory vs length for each benchmark
    # setting (the model-level training step and the attention core)
    assert len(images) == 4
    for uri in images:
        assert uri.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).verify()
    assert "37.00 ± 1.41 (n=2) [c1]" in text and "[c1] ListOps, softmax, preset lra/listops" in text


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium) for the browser check")
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = Elements()
    page.feed(dom.stdout)
    assert page.count("table") == 7 and len(page.images()) == 4
    assert "LRA Table 1: test accuracy (%), published and ours" in dom.stdout
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([CHROMIUM, *flags, f"--screenshot={screenshot}", "--window-size=1400,2400",
                           report.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    pixels = Image.open(screenshot).convert("L")
    low, high = pixels.getextrema()
    assert high - low > 100  # text and figures drawn, not a blank page
