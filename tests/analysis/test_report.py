"""The report: every file written, every plot embedded, and it renders in headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from knoblab.analysis.analyze import Analysis, analyze

PLOTS = {
    "plot-pareto_shapes-vqa",
    "plot-coupling_shapes-vqa",
    "plot-stages",
    "plot-scaling",
    "plot-parity",
}


@pytest.fixture(scope="module")
def report(small_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    """The small sweep with one configuration recorded as out-of-memory, analysed once."""
    d = tmp_path_factory.mktemp("results") / "r"
    shutil.copytree(small_dir, d)
    sorted(d.glob("*_topk*_blocks*.json"))[0].write_text('{"status": "oom", "top_k": 2}')
    return analyze(d, tmp_path_factory.mktemp("report"), budget_ms=4.0)


def test_files_and_embedded_plots(report: Analysis) -> None:
    f = report.files
    assert {"report.html", "analysis.md", "analysis.json", "estimator.json"} <= set(f)
    for name in (
        "pareto_shapes-vqa.png",
        "coupling_shapes-vqa.png",
        "stages.png",
        "scaling.png",
        "parity.png",
    ):
        assert f[name].read_bytes()[:4] == b"\x89PNG"
    page = f["report.html"].read_text()
    imgs = dict(re.findall(r'<img id="([^"]+)"[^>]*src="data:image/png;base64,([^"]+)"', page))
    assert set(imgs) == PLOTS
    for b64 in imgs.values():
        assert base64.b64decode(b64)[:4] == b"\x89PNG"
    # offline: nothing is fetched
    assert not re.search(r'(src|href)="(https?:)?//', page)
    md = f["analysis.md"].read_text()
    assert (
        "## E1" in md
        and "## E2" in md
        and "## E3" in md
        and "![pareto](pareto_shapes-vqa.png)" in md
    )
    assert "[measured]" in md  # the budget answer says where its figures come from


def test_skipped_records_appear_in_the_report(report: Analysis) -> None:
    bad = sorted(report.results.root.glob("*_topk*_blocks*.json"))[0].name
    assert [s.name for s in report.results.skipped] == [bad]
    assert len(report.results.configs) == 7
    assert bad in report.files["report.html"].read_text()
    assert f"`{bad}`: status=oom" in report.files["analysis.md"].read_text()


def _chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    )


def _render(html_path: Path, tmp: Path) -> str:
    exe = _chromium()
    assert exe is not None
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'chrome-profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        html_path.resolve().as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return out.stdout


@pytest.mark.browser
@pytest.mark.skipif(
    _chromium() is None,
    reason="headless chromium not installed (make browser / apt-get install chromium)",
)
def test_renders_in_headless_chromium(report: Analysis, tmp_path: Path) -> None:
    dom = _render(report.files["report.html"], tmp_path)
    status = re.search(r'<p id="knoblab-status"([^>]*)>([^<]*)<', dom)
    assert status, dom[:500]
    attrs = status.group(1)
    assert 'data-status="ok"' in attrs, status.group(2)
    assert f'data-images="{len(PLOTS)}"' in attrs
    for plot in PLOTS:
        assert f'id="{plot}"' in dom


@pytest.mark.browser
@pytest.mark.skipif(
    _chromium() is None,
    reason="headless chromium not installed (make browser / apt-get install chromium)",
)
def test_chromium_check_catches_a_broken_page(report: Analysis, tmp_path: Path) -> None:
    # the marker must turn to "error" when an image is broken or a script fails
    page = report.files["report.html"].read_text()
    broken = re.sub(r'(id="plot-stages"[^>]*src="data:image/png;base64,)[^"]+', r"\1AAAA", page)
    broken = broken.replace("</body>", "<script>undefinedFunction();</script></body>")
    path = tmp_path / "broken.html"
    path.write_text(broken)
    dom = _render(path, tmp_path)
    status = re.search(r'<p id="knoblab-status"([^>]*)>([^<]*)<', dom)
    assert status and 'data-status="error"' in status.group(1)
    assert "plot-stages" in status.group(2) and "undefinedFunction" in status.group(2)
