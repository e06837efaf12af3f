"""The self-contained HTML reports (``reports.html``) and their check in headless Chromium.

Unit tests render synthetic markdown with PNG plots drawn by matplotlib in ``tmp_path``
and read the HTML back with the standard library's parser: every image embedded, a
missing one an error naming it, raw HTML escaped, the verdict banner and the result
cells' classes. ``build`` and the capacity report run on folders written by hand in the
formats the harness writes, so their hooks are covered without a database.

The Chromium tests open the HTML of a built run folder and of a go/no-go document in a
real headless Chromium (``reports.browser``, DevTools over a pipe: nothing is added to
the page), check that every image decoded and the verdict is visible at the top, that
the page asked for nothing but itself and its embedded images, and save a screenshot and
a PDF. The last test makes a real run folder with ``python -m probes local-run`` (local
PostgreSQL servers, no lab).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psutil
import pytest
from matplotlib.figure import Figure
from PIL import Image

from reports.__main__ import main
from reports.browser import CHROMIUM_MISSING, Browser, Tab, find_chromium
from reports.build import build
from reports.capacity import write_capacity_report
from reports.errors import ReportError
from reports.gonogo import write_gonogo
from reports.html import RESULT_CLASSES, render_html, verdict_of, write_html
from tests.test_demo import local_run
from tests.test_reports import _run_folder

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- helpers


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def _cells(text: str) -> dict[str, str]:
    """Each ``<td>``'s text -> its class attribute."""
    return {
        html_text(m.group(2)): m.group(1) or ""
        for m in re.finditer(r'<td(?: class="([^"]*)")?>(.*?)</td>', text, re.DOTALL)
    }


def html_text(fragment: str) -> str:
    return " ".join("".join(_Page(fragment).text).split())


def _plot(path: Path, colour: str = "tab:blue") -> Path:
    fig = Figure(figsize=(4, 2.5), dpi=60)
    ax = fig.subplots()
    ax.plot([0, 1, 2, 3], [0, 2, 1, 3], color=colour)
    ax.set_title(path.stem)
    fig.savefig(path)
    return path


def _banner(text: str) -> tuple[str, str]:
    """(class, visible verdict) of the verdict banner."""
    match = re.search(r'<header class="verdict ([^"]+)"[^>]*>.*?class="verdict-value">(.*?)</strong>', text)
    assert match, "no verdict banner"
    return match.group(1), match.group(2)


def _report(folder: Path, body: str) -> Path:
    md = folder / "report.md"
    md.write_text(body, encoding="utf-8")
    return md


# --------------------------------------------------------------------------- unit: images


def test_every_local_image_is_embedded_and_links_stay_relative(tmp_path: Path) -> None:
    plots = [_plot(tmp_path / "rto-rpo.png"), _plot(tmp_path / "timeline tenant 0.png", "tab:red")]
    (tmp_path / "summary.json").write_text("{}")
    md = _report(
        tmp_path,
        "# Chaos run r1: GO\n\n**Verdict: GO**: all good.\n\n## Plots\n\n"
        "![RTO per tenant](rto-rpo.png)\n\n![Timeline](<timeline tenant 0.png>)\n\n"
        "See [the summary](summary.json) and [the evidence](evidence/before/pods.txt).\n",
    )
    out = write_html(md)
    assert out == tmp_path / "report.html"
    page = _Page(out.read_text(encoding="utf-8"))
    sources = [img["src"] for img in page.all("img")]
    assert len(sources) == 2
    for src, plot in zip(sources, plots, strict=True):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == plot.read_bytes()
    hrefs = [a["href"] for a in page.all("a")]
    assert hrefs == ["summary.json", "evidence/before/pods.txt"]
    assert page.all("link") == [] and page.all("script") == []
    footer = out.read_text().split("<footer>", 1)[1]
    assert "links point into the run folder" in footer and "report.md" in footer


def test_links_to_a_markdown_report_go_to_its_html_form_when_there_is_one(tmp_path: Path) -> None:
    for run in ("r1", "r2"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "report.md").write_text(f"# {run}\n")
    (tmp_path / "r1" / "report.html").write_text("<html></html>")
    (tmp_path / "doc").mkdir()
    md = _report(tmp_path / "doc", "# Go/No-Go\n\n[r1](../r1/report.md) [r2](../r2/report.md#top)\n")
    page = _Page(write_html(md).read_text())
    assert [a["href"] for a in page.all("a")] == ["../r1/report.html", "../r2/report.md#top"]


def test_links_are_rewritten_when_the_html_goes_to_another_folder(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    _plot(run / "rto-rpo.png")
    md = _report(
        run, "# r1\n\n![p](rto-rpo.png) [summary](summary.json) [top](#r1) [site](https://example.com/x)\n"
    )
    out_dir = tmp_path / "share"
    out_dir.mkdir()
    page = _Page(write_html(md, out_dir / "r1.html").read_text())
    hrefs = {a["href"]: a.get("rel") for a in page.all("a")}
    assert hrefs == {
        "../runs/r1/summary.json": None,
        "#r1": None,
        "https://example.com/x": "noopener noreferrer",
    }
    assert page.all("img")[0]["src"].startswith("data:image/png;base64,")


def test_a_missing_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    _plot(tmp_path / "rto-rpo.png")
    md = _report(tmp_path, "# r\n\n![RTO](rto-rpo.png)\n\n![Timeline](timeline-tenant-7.png)\n")
    with pytest.raises(ReportError) as caught:
        write_html(md)
    message = str(caught.value)
    assert "timeline-tenant-7.png" in message and "missing" in message and "\n" not in message
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    ("reference", "content", "words"),
    [
        ("https://example.com/p.png", None, "not a local file"),
        ("notes.png", b"this is text, not a picture", "not a PNG"),
    ],
)
def test_remote_or_broken_images_are_refused(
    tmp_path: Path, reference: str, content: bytes | None, words: str
) -> None:
    if content is not None:
        (tmp_path / reference).write_bytes(content)
    with pytest.raises(ReportError, match=words):
        render_html(f"# r\n\n![p]({reference})\n", tmp_path, "r")


# --------------------------------------------------------------------------- unit: escaping


def test_raw_html_from_data_is_escaped_and_only_br_breaks_lines(tmp_path: Path) -> None:
    evil = (
        "# Run <script>alert('title')</script>\n\n**Verdict: NO-GO**: 1 violation:\n\n"
        "- tenant <img src=x onerror=alert(1)> lost 3 writes\n\n"
        "| gate | result | evidence |\n|---|---|---|\n"
        "| g1 | FAIL | first<br>second <b onmouseover=alert(2)>bold</b> <iframe src=//evil.example> |\n\n"
        "[click](javascript:alert(3)) ![x](javascript:alert(4)) <a href='javascript:alert(5)'>a</a>\n\n"
        "```\n<script>alert(6)</script>\n```\n"
    )
    text = render_html(evil, tmp_path, "Run <script>")
    page = _Page(text)
    names = [name for name, _ in page.tags]
    assert "script" not in names and "iframe" not in names and "b" not in names
    assert page.all("img") == []
    for _, attrs in page.tags:
        assert not any(key.startswith("on") for key in attrs), attrs
        assert not any("javascript:" in value for value in attrs.values()), attrs
    assert "&lt;script&gt;alert('title')&lt;/script&gt;" in text.replace("&#x27;", "'")
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<title>Run &lt;script&gt;</title>" in text
    cell = re.search(r"<td>first(.*?)</td>", text, re.DOTALL)
    assert cell and cell.group(1).startswith("<br")  # the one tag kept: a line break
    assert cell.group(1).count("<br") == 1
    assert 'http-equiv="Content-Security-Policy"' in text and "default-src 'none'" in text


# --------------------------------------------------------------------------- unit: verdict and results


@pytest.mark.parametrize(
    ("line", "css", "shown"),
    [
        ("**Verdict: GO**: every tenant recovered.", "verdict-go", "GO"),
        ("**Verdict: NO-GO**: 2 violations:", "verdict-nogo", "NO-GO"),
        ("**Verdict: CANNOT TELL**", "verdict-other", "CANNOT TELL"),
        ("Verdict: GO (not bold, so not the verdict line)", "verdict-other", "not stated"),
    ],
)
def test_the_verdict_banner_is_coloured_by_the_verdict_line(
    tmp_path: Path, line: str, css: str, shown: str
) -> None:
    text = render_html(f"# Doc\n\n- Generated: now\n\n{line}\n\n## Why\n\nbecause\n", tmp_path, "Doc")
    assert _banner(text) == (css, shown)
    assert text.index('class="verdict ') < text.index("<main>") < text.index("<h1>")


def test_a_verdict_quoted_in_evidence_is_not_the_documents(tmp_path: Path) -> None:
    doc = (
        "# Go/No-Go\n\n- Runs: **Verdict: GO** run\n\n**Verdict: NO-GO**\n\n"
        "| gate | result | evidence |\n|---|---|---|\n| g | FAIL | **Verdict: GO** in a cell |\n\n"
        "> **Verdict: GO** quoted\n\n```\n**Verdict: GO**\n```\n"
    )
    assert _banner(render_html(doc, tmp_path, "d")) == ("verdict-nogo", "NO-GO")
    assert verdict_of(doc) == "NO-GO"
    both = "# d\n\n**Verdict: GO**\n\n**Verdict: NO-GO**\n"
    css, shown = _banner(render_html(both, tmp_path, "d"))
    assert (css, shown) == ("verdict-other", "cannot tell") and verdict_of(both) is None


def test_result_cells_get_a_class_by_their_whole_text(tmp_path: Path) -> None:
    rows = [
        ("**FAIL**", "result result-fail"),
        ("**PASS**", "result result-pass"),
        ("PASS (lab only)", "result result-lab-only"),
        ("NOT RUN", "result result-not-run"),
        ("MANUAL", "result result-manual"),
        ("SIGNED OFF", "result result-signed-off"),
        ("pass", "result result-pass"),  # the capacity report's steps say "pass" / "**FAIL**"
        ("FAIL twice", ""),
        ("no FAIL here", ""),
    ]
    table = "| gate | result |\n|---|---|\n" + "".join(f"| g{i} | {r} |\n" for i, (r, _) in enumerate(rows))
    text = render_html(f"# d\n\nFAIL\n\n{table}", tmp_path, "d")
    cells = _cells(text)
    for raw, css in rows:
        assert cells[html_text(raw.replace("**", ""))] == css, raw
    assert "<p>FAIL</p>" in text  # outside a table cell nothing is classed
    assert set(RESULT_CLASSES) == {"FAIL", "PASS", "PASS (LAB ONLY)", "NOT RUN", "MANUAL", "SIGNED OFF"}
    assert "@media print" in text and "break-inside: avoid" in text


# --------------------------------------------------------------------------- build and capacity hooks


def test_build_writes_report_html_with_every_plot_embedded(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, lose=2)
    report = build(run)
    page_file = run / "report.html"
    assert report == run / "report.md" and page_file.is_file()
    text = page_file.read_text()
    plots = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())
    assert sorted(plots) == ["rto-rpo.png", "timeline-alpha.png", "timeline-beta.png"]
    embedded = [img["src"] for img in _Page(text).all("img")]
    assert [base64.b64decode(s.split(",", 1)[1]) for s in embedded] == [(run / p).read_bytes() for p in plots]
    assert _banner(text) == ("verdict-nogo", "NO-GO")  # two acknowledged writes lost
    banner, body = text.split("</header>", 1)
    assert "1 violation, listed below" in banner
    assert re.search(r"<li>.*lost.*</li>", body.split("<h2>", 1)[0])  # the violation, before any section


def _capacity_doc() -> dict[str, Any]:
    def step(tenants: int, passed: bool) -> dict[str, Any]:
        return {
            "tenants": tenants,
            "write_rate": 20.0,
            "trial": 1,
            "phase": "line",
            "run_dir": f"steps/n{tenants}",
            "passed": passed,
            "reasons": [] if passed else ["RTO 75.0 s over the 60 s objective"],
            "run_verdict": "GO" if passed else "NO-GO",
            "rto": {"worst": 8.0 if passed else 75.0, "p95": 7.0, "per_tenant": {"t-0": 8.0}},
            "lost": 0,
            "latency_ms": {"p50": 10.0, "p99": 40.0, "max": None},
            "late_starts": 0,
            "efficiency": 0.99,
            "acked_per_second": tenants * 20.0,
            "offered_per_second": tenants * 20.0,
            "nodes": {"node-a": {"cpu_cores_mean": 0.1, "cpu_cores_max": 0.2, "memory_bytes_max": 1 << 26}},
            "nodes_unavailable": None,
            "ready_again_seconds": {"t-0": 5.0},
            "load_cpu_seconds": 2.0,
            "duration_seconds": 60.0,
        }

    return {
        "kind": "capacity",
        "schema": 1,
        "sweep_id": "sweep-h",
        "started_at": "2026-01-05T10:00:00Z",
        "ended_at": "2026-01-05T11:00:00Z",
        "complete": True,
        "interrupted": False,
        "target": {"kind": "lab", "api_server": "https://127.0.0.1:36443", "nodes": ["lab-0"]},
        "settings": {
            "tenants_from": 2,
            "tenants_to": 4,
            "tenants_step": 2,
            "write_rates": [20.0],
            "fault": "pod-eviction",
            "trials": 1,
            "objective_seconds": 60.0,
            "latency_limit_ms": 200.0,
            "min_efficiency": 0.95,
            "precision": 1,
        },
        "steps": [step(2, True), step(4, False)],
        "boundaries": [],
        "eta_seconds": None,
    }


def test_the_capacity_report_comes_as_html_too(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    report = write_capacity_report(_capacity_doc(), folder)
    text = (folder / "capacity.html").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())
    assert images and len(_Page(text).all("img")) == len(images)
    assert all(img["src"].startswith("data:image/png;base64,") for img in _Page(text).all("img"))
    assert _banner(text)[0] == "verdict-other"  # a sweep states no go/no-go verdict: amber, says so
    cells = _cells(text)
    assert cells["pass"] == "result result-pass" and cells["FAIL"] == "result result-fail"
    assert 'href="steps/n2/"' in text  # no report.md in the step folder: the folder is linked


# --------------------------------------------------------------------------- CLI


def test_cli_renders_files_and_names_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _plot(tmp_path / "p.png")
    md = _report(tmp_path, "# r\n\n**Verdict: GO**\n\n![p](p.png)\n")
    assert main(["html", str(md)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    assert main(["html", str(tmp_path / "nope.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.md does not exist" in err and "Traceback" not in err


def test_cli_screenshot_without_chromium_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    md = _report(tmp_path, "# r\n\n**Verdict: GO**\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_chromium() is None
    assert main(["html", str(md), "--screenshot"]) == 2
    assert capsys.readouterr().err == f"reports: {CHROMIUM_MISSING}\n"
    assert not (tmp_path / "report.html").exists()  # nothing half done


# --------------------------------------------------------------------------- headless Chromium

_FACTS = """(() => {
  const banner = document.querySelector('header.verdict');
  const r = banner ? banner.getBoundingClientRect() : null;
  const style = banner ? getComputedStyle(banner) : null;
  const hit = r ? document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2) : null;
  return {
    images: [...document.images].map(i => ({
      data: i.src.startsWith('data:image/png;base64,'), complete: i.complete, width: i.naturalWidth})),
    banner: banner && {
      text: banner.innerText, top: r.top, height: r.height, viewport: innerHeight,
      shown: style.display !== 'none' && style.visibility === 'visible' && Number(style.opacity) > 0,
      onTop: !!hit && banner.contains(hit), background: style.backgroundColor},
    fails: document.querySelectorAll('td.result-fail').length,
    labOnly: document.querySelectorAll('td.result-lab-only').length,
  };
})()"""


def _chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(CHROMIUM_MISSING)
    return binary


def _check_page(tab: Tab, verdict: str, images: int) -> dict[str, Any]:
    facts = tab.evaluate(_FACTS)
    assert len(facts["images"]) == images
    for image in facts["images"]:
        assert image["data"] and image["complete"] and image["width"] > 0, image
    banner = facts["banner"]
    assert banner and banner["shown"] and banner["onTop"], banner
    assert verdict in banner["text"].split()
    assert banner["top"] >= 0 and banner["top"] + banner["height"] <= banner["viewport"]
    others = [u for u in tab.requests if not u.startswith(("data:", tab.page.as_uri()))]
    assert others == []  # nothing fetched but the page and its embedded images
    return dict(facts)


def _alive(pgid: int) -> list[int]:
    """Processes of the group ``pgid`` that still run (killed ones wait as zombies for their reaper)."""
    alive = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
    return alive


def _check_png(path: Path, width: int) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        assert img.size[0] == width and img.size[1] > 300
        assert len(img.getcolors(1 << 16) or range(1 << 16)) > 8  # not a blank page


def _check_pdf(path: Path, images: int) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(data) > 20_000
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", data)) >= 1
    assert len(re.findall(rb"/Subtype\s*/Image", data)) >= images


@pytest.mark.integration
def test_chromium_shows_the_verdict_and_every_image_of_a_run_report_and_a_gonogo(tmp_path: Path) -> None:
    binary = _chromium()
    (tmp_path / "runs").mkdir()
    run = _run_folder(tmp_path / "runs", lose=0)
    build(run)
    gonogo = tmp_path / "runs" / "07-metrics-go-no-go.md"
    write_gonogo([run], gonogo)
    gonogo_page = write_html(gonogo)
    started = time.monotonic()
    with Browser(tmp_path / "profile", binary=binary, timeout=15) as browser:
        tab = browser.open(run / "report.html")
        _check_page(tab, "GO", images=3)
        _check_png(tab.screenshot(tmp_path / "report-page.png"), browser.width)
        _check_pdf(tab.print_pdf(tmp_path / "report.pdf"), images=3)
        tab = browser.open(gonogo_page)
        facts = _check_page(tab, "NO-GO", images=1)
        assert facts["labOnly"] + facts["fails"] > 0  # result cells are classed in the live page
        _check_png(tab.screenshot(tmp_path / "gonogo-page.png"), browser.width)
        _check_pdf(tab.print_pdf(tmp_path / "gonogo.pdf"), images=1)
        pgid = browser.process.pid if browser.process else 0
    assert time.monotonic() - started < 20
    assert _alive(pgid) == []  # the browser's whole process group is gone


@pytest.mark.integration
def test_cli_writes_page_screenshots_and_pdfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _chromium()
    _plot(tmp_path / "rto-rpo.png")
    md = _report(
        tmp_path, "# Chaos run r: NO-GO\n\n**Verdict: NO-GO**: 1 violation:\n\n![RTO](rto-rpo.png)\n"
    )
    assert main(["html", str(md), "--screenshot", "--pdf"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / n) for n in ("report.html", "report-page.png", "report.pdf")]
    _check_png(tmp_path / "report-page.png", 1200)
    _check_pdf(tmp_path / "report.pdf", images=1)


@pytest.mark.integration
def test_browser_timeout_kills_the_process_group(tmp_path: Path) -> None:
    binary = _chromium()
    browser = Browser(tmp_path / "profile", binary=binary, timeout=15)
    browser.start()
    assert browser.process is not None
    pgid = browser.process.pid
    tab = browser.open(write_html(_report(tmp_path, "# r\n\n**Verdict: GO**\n")))
    browser.timeout = 0.5
    with pytest.raises(ReportError, match=r"did not answer Runtime\.evaluate within 0\.5 s"):
        tab.evaluate("new Promise(() => {})")  # never settles
    assert _alive(pgid) == []
    browser.close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_local_run_report_opens_in_chromium(tmp_path: Path) -> None:
    binary = _chromium()
    done, _ = local_run(
        tmp_path,
        *("--tenants", "2", "--duration", "8", "--kill-tenant", "1"),
        *("--freeze-at", "2", "--freeze-seconds", "1", "--kill-at", "4", "--stability", "1"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = Path(done.stdout.strip().splitlines()[-1].removeprefix("report: "))
    page_file = report.with_suffix(".html")
    assert page_file.is_file()
    verdict = verdict_of(report.read_text())
    assert verdict is not None
    images = len(re.findall(r"!\[[^\]]*\]\(", report.read_text()))
    with Browser(tmp_path / "profile", binary=binary, timeout=15) as browser:
        tab = browser.open(page_file)
        _check_page(tab, verdict, images=images)
        _check_png(tab.screenshot(tmp_path / "local-page.png"), browser.width)
