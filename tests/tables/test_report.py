"""results/report.html: self-contained, rendered by a real browser (headless Chromium) with the Figure 3 view and
the compact table, every number of which is recomputed here from the run records it names; the browser tests skip
where Chromium is not installed."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from lra.tables import published, sections
from lra.tables.build import Settings, build
from lra.tables.report import Section
from lra.tables.runs import Run, from_record
from tests.tables.test_efficiency import write_bench_fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium)")
ROOT = Path(__file__).resolve().parents[2]
FIGURE3_ALT = "Accuracy against speed and memory, in the manner of LRA Figure 3"


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def count(self, tag: str) -> int:
        return sum(t == tag for t, _ in self.tags)

    def images(self) -> list[dict]:
        return [attrs for tag, attrs in self.tags if tag == "img"]


class CompactCells(HTMLParser):
    """The result cells of the compact table: their data- attributes, the text a reader sees without a click
    (the <summary>, or the whole Avg cell), and the text of each marked part (mean, n, ref, mark)."""

    PARTS = ("mean", "n", "ref", "mark")

    def __init__(self):
        super().__init__()
        self.cells: list[dict] = []
        self._table = False
        self._cell: dict | None = None
        self._summary = False
        self._part: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "table" and attrs.get("class") == "compact":
            self._table = True
        elif self._table and tag == "td" and attrs.get("class") in ("cell", "avg"):
            self._cell = {"attrs": attrs, "text": "", "parts": {}}
        elif self._cell is not None and tag == "summary":
            self._summary = True
        elif self._cell is not None and attrs.get("class") in self.PARTS:
            self._part = attrs["class"]
            self._cell["parts"].setdefault(self._part, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = False
        elif tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
        elif tag == "summary":
            self._summary = False
        elif tag in ("b", "span"):
            self._part = None

    def handle_data(self, data: str) -> None:
        if self._cell is None:
            return
        if self._summary or self._cell["attrs"]["class"] == "avg":
            self._cell["text"] += data
        if self._part:
            self._cell["parts"][self._part][-1] += data


def load_records(runs_dir: Path) -> dict[str, Run]:
    return {run.run_id: run for run in (from_record(json.loads(p.read_text()), str(p))
                                        for p in runs_dir.glob("*.json"))}


def _mean_text(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def _reference_text(theirs: published.Value, mean: float) -> str:
    return f"LRA {theirs:.2f} ({mean - theirs:+.2f})" if isinstance(theirs, float) else f"LRA {theirs}"


def _check_mark(mark: str, runs: list[Run]) -> None:
    if mark.startswith("† "):
        for pair in re.split(r", (?=[\w.]+=)", mark[2:]):
            key, value = pair.split("=", 1)
            assert all(str(run.setting(key)) == value for run in runs), (mark, key)
    elif mark.startswith("‡ shortened: "):
        steps = sorted(run.steps for run in runs)
        span = f"{steps[0]:,}" if steps[0] == steps[-1] else f"{steps[0]:,}–{steps[-1]:,}"
        assert mark == f"‡ shortened: {span} steps"
    else:
        assert mark == f"at chance ({max(run.chance for run in runs):.2f})"


def check_compact_numbers(page: str, runs: dict[str, Run]) -> set[str]:
    """Every number a reader sees in the compact table, recomputed from the records its cell names and the
    published tables; returns the run ids checked."""
    parser = CompactCells()
    parser.feed(page)
    checked: set[str] = set()
    for cell in parser.cells:
        attrs, parts = cell["attrs"], cell["parts"]
        members = [runs[run_id] for run_id in attrs["data-runs"].split()]
        if not members:
            assert not re.search(r"\d", cell["text"]), cell["text"]
            continue
        attention, reference = attrs["data-attention"], attrs["data-reference"]
        assert reference == published.LRA_ROW_FOR_BACKEND.get(attention, published.BASELINE_ROW)
        assert all(run.attention == attention for run in members)
        if attrs["class"] == "cell":
            task, checkpoint = attrs["data-task"], attrs["data-checkpoint"]
            assert all(run.column == task for run in members)
            values = [run.accuracy(checkpoint) for run in members]
            assert parts["mean"] == [_mean_text(values)] and parts["n"] == [f"n={len(values)}"]
            assert parts["ref"] == [_reference_text(published.LRA_TABLE1.rows[reference][task],
                                                    statistics.fmean(values))]
            for mark in parts.get("mark", []):
                _check_mark(mark, members)
        else:  # LRA's Avg: the mean of the five tasks' means
            by_task: dict[str, list[float]] = {}
            for run in members:
                by_task.setdefault(run.column, []).append(run.accuracy("best"))
            assert sorted(by_task) == sorted(published.AVERAGED_TASKS)
            average = statistics.fmean(statistics.fmean(v) for v in by_task.values())
            assert parts["mean"] == [f"{average:.2f}"]
            assert parts["ref"] == [_reference_text(published.LRA_TABLE1.printed_avg[reference], average)]
        rest = cell["text"]
        for text in (t for texts in parts.values() for t in texts):
            rest = rest.replace(text, "", 1)
        assert not re.search(r"\d", rest), rest  # no number outside the parts checked above
        checked.update(attrs["data-runs"].split())
    return checked


@pytest.fixture(scope="module")
def report(report_records: Path, presets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    settings = Settings(runs_dir=report_records, bench_dir=write_bench_fixture(root / "bench"),
                        tables_dir=root / "tables", report=root / "report.html", figure_length=2048)
    build(settings, presets)
    return settings.report


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(|<script|<link|@import""", text)
    page = Elements()
    page.feed(text)
    # compact table and its published-only rows, 1 benchmark table, Table 2, Table 1 in full, parameters,
    # training speed, second reference, runs
    assert page.count("table") == 9
    # the Figure 3 view, the training curves, one benchmark figure (the model-level training step: the fixture's
    # attention-core setting has one length only, so no line and no figure)
    images = page.images()
    assert [image["alt"].split(" (")[0] for image in images][:1] == [FIGURE3_ALT]
    assert len(images) == 3
    for image in images:
        assert image["src"].startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1]))).verify()
    png = (report.parent / "tables" / "lra_figure3.png").read_bytes()
    assert base64.b64decode(images[0]["src"].split(",", 1)[1]) == png  # the README's PNG is the report's figure
    assert "[c1] ListOps, softmax, preset lra/listops" in text


def test_first_sections_answer_which_attention_at_what_cost(report: Path) -> None:
    text = report.read_text()
    headings = re.findall(r'<h1 class="section">([^<]+)</h1>', text)
    assert headings[:3] == ["Accuracy against speed and memory (LRA Figure 3, from our runs)",
                            "Our runs at a glance", "Training curves"]
    full = text.index("Every cell: LRA Table 1 in full")
    assert text.index('<details class="more">', full) < text.index("LRA Table 1: test accuracy (%)", full)


def test_a_further_section_is_one_builder_in_the_list(report_records: Path, presets, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def analysis(inputs: sections.ReportInputs) -> Section:
        return Section("Sparse attention analysis", intro=f"{len(inputs.runs)} runs read")

    monkeypatch.setattr(sections, "SECTIONS", [*sections.SECTIONS[:2], analysis, *sections.SECTIONS[2:]])
    settings = Settings(runs_dir=report_records, bench_dir=tmp_path / "none", tables_dir=tmp_path / "tables",
                        report=tmp_path / "report.html")
    build(settings, presets)
    headings = re.findall(r'<h1 class="section">([^<]+)</h1>', settings.report.read_text())
    assert headings[2] == "Sparse attention analysis" and "14 runs read" in settings.report.read_text()


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@needs_chromium
def test_report_renders_in_headless_chromium(report: Path, report_records: Path, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = Elements()
    page.feed(dom.stdout)
    assert page.count("table") == 9 and len(page.images()) == 3
    assert page.images()[0]["alt"].startswith(FIGURE3_ALT)
    assert '<table class="compact">' in dom.stdout and "recipe/* presets</th>" in dom.stdout
    checked = check_compact_numbers(dom.stdout, load_records(report_records))
    # softmax on all five tasks (and its Avg), performer, the new recipe family
    assert checked == {"a1", "a2", "t1", "r1", "i1", "f1", "p2", "n1"}
    screenshot = tmp_path / "report.png"
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1400,2400", report.as_uri(),
                    profile=tmp_path / "profile")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    low, high = Image.open(screenshot).convert("L").getextrema()
    assert high - low > 100  # text and figures drawn, not a blank page


def test_committed_report_holds_only_numbers_of_the_committed_records() -> None:
    page = (ROOT / "results" / "report.html").read_text()
    assert FIGURE3_ALT in page and (ROOT / "results" / "tables" / "lra_figure3.png").is_file()
    assert check_compact_numbers(page, load_records(ROOT / "results" / "runs"))
