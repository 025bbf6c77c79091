"""The report: every file written, every plot embedded, and it renders in headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knoblab.analysis import figures
from knoblab.analysis.analyze import Analysis, analyze
from knoblab.analysis.synthetic import write_synthetic_results
from knoblab.data.sample import Sample
from knoblab.models.adapter import Generation, KnobSpec, Prepared, check_knob
from knoblab.profiling.runner import run_sweep
from knoblab.profiling.synthetic import ListDataset

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
    assert set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page)) == PLOTS
    # offline: plotly.js inlined once (not once per plot), nothing fetched
    assert page.count(figures.plotly_js()[:200]) == 1
    assert not re.search(r'<script[^>]*\ssrc=|<link[^>]*\shref=|<img[^>]*\ssrc="(https?:)?//', page)
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


def _need_chromium() -> str:
    """The browser, or a skip (a failure under CI: there ``make browser`` must have installed it)."""
    exe = _chromium()
    if exe is None:
        why = "headless chromium not installed (make browser / apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {why}")
        pytest.skip(why)
    return exe


def _render(html_path: Path, tmp: Path, *extra: str) -> str:
    cmd = [
        _need_chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'chrome-profile'}",
        "--virtual-time-budget=15000",
        *extra,
        "--dump-dom",
        html_path.resolve().as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    return out.stdout


#: Appended to a copy of the report: once plotly has drawn, the box of every visible text
#: element in the plots (getBoundingClientRect), every pair of boxes that overlap, and what
#: each plot says, as JSON in <pre id="geometry">. Overlap: more than 1 px both ways.
GEOMETRY_JS = """
<script>
window.addEventListener("load", function () { setTimeout(function () {
  function shown(el, stop) {
    for (var e = el; e && e !== stop; e = e.parentElement) {
      var cs = getComputedStyle(e);
      if (cs.display === "none" || cs.visibility === "hidden" || cs.opacity === "0") return false;
    }
    return true;
  }
  var res = {plots: [], overlaps: []};
  document.querySelectorAll("div.plotly-graph-div").forEach(function (div) {
    var boxes = [];
    div.querySelectorAll("text").forEach(function (t) {
      var txt = (t.textContent || "").trim(), r = t.getBoundingClientRect();
      if (!txt || r.width < 1 || r.height < 1 || !shown(t, div)) return;
      boxes.push({text: txt, x0: r.left, y0: r.top, x1: r.right, y1: r.bottom,
                  cls: t.getAttribute("class") || ""});
    });
    for (var i = 0; i < boxes.length; i++) for (var j = i + 1; j < boxes.length; j++) {
      var a = boxes[i], b = boxes[j];
      var w = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0), h = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
      if (w > 1 && h > 1) res.overlaps.push({plot: div.id, a: a.text, b: b.text, w: w, h: h});
    }
    res.plots.push({id: div.id, svg: div.querySelectorAll("svg.main-svg").length,
                    texts: boxes.length, words: boxes.map(function (b) { return b.text; }).join(" | "),
                    annotations: div.querySelectorAll("g.annotation text").length,
                    errorbars: div.querySelectorAll("g.errorbar path").length});
  });
  var pre = document.createElement("pre");
  pre.id = "geometry";
  pre.textContent = JSON.stringify(res);
  document.body.appendChild(pre);
}, 1000); });
</script>
"""


def _geometry(page: Path, tmp: Path, width: int = 1280) -> tuple[dict, str]:
    """(geometry JSON, status text) of ``page`` rendered in headless Chromium."""
    probe = tmp / "probe.html"
    probe.write_text(page.read_text().replace("</body>", GEOMETRY_JS + "</body>"))
    dom = _render(probe, tmp, f"--window-size={width},1000")
    m = re.search(r'<pre id="geometry">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    status = re.search(r'<p id="knoblab-status"([^>]*)>([^<]*)<', dom)
    assert status, dom[:500]
    return json.loads(html.unescape(m.group(1))), status.group(1) + " " + status.group(2)


@pytest.mark.browser
def test_renders_in_headless_chromium(report: Analysis, tmp_path: Path) -> None:
    dom = _render(report.files["report.html"], tmp_path)
    status = re.search(r'<p id="knoblab-status"([^>]*)>([^<]*)<', dom)
    assert status, dom[:500]
    attrs = status.group(1)
    assert 'data-status="ok"' in attrs, status.group(2)
    assert f'data-plots="{len(PLOTS)}"' in attrs
    for plot in PLOTS:
        assert f'id="{plot}"' in dom


@pytest.mark.browser
def test_chromium_check_catches_a_broken_page(report: Analysis, tmp_path: Path) -> None:
    # the marker must turn to "error" when a plot is not drawn or a script fails
    page = report.files["report.html"].read_text()
    guard = 'if (document.getElementById("plot-stages"))'
    assert page.count(guard) == 1
    broken = page.replace(guard, "if (false)")  # the stages plot is never drawn
    broken = broken.replace("</body>", "<script>undefinedFunction();</script></body>")
    path = tmp_path / "broken.html"
    path.write_text(broken)
    dom = _render(path, tmp_path)
    status = re.search(r'<p id="knoblab-status"([^>]*)>([^<]*)<', dom)
    assert status and 'data-status="error"' in status.group(1)
    assert "not drawn: plot-stages" in status.group(2) and "undefinedFunction" in status.group(2)


# --- 10 and 60 configurations: every plot drawn, no two visible labels overlap -------------


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Analysis]:
    """A 10- and a 60-configuration sweep (written by the runner's record writer), analysed."""
    root = tmp_path_factory.mktemp("sweeps")
    grids = {
        10: {
            "tiers": None,
            "vision_tokens": (64, 128, 256, 512, 1024),
            "top_ks": (2, 8),
            "blocks": (8,),
        },
        60: {"tiers": ("low", "medium", "high"), "top_ks": (1, 2, 4, 6, 8), "blocks": (2, 4, 6, 8)},
    }
    out = {}
    for n, grid in grids.items():
        d = write_synthetic_results(root / f"r{n}", num_samples=20, noise=0.05, seed=n, **grid)
        out[n] = analyze(d, root / f"a{n}", budget_ms=4.0)
        assert len(out[n].results.configs) == n
    return out


def _plots_drawn_apart(geo: dict, status: str, names: set[str]) -> None:
    assert 'data-status="ok"' in status, status
    assert {p["id"] for p in geo["plots"]} == names
    for p in geo["plots"]:
        assert p["svg"] >= 1 and p["texts"] > 5, p  # drawn, with its axes and title
        assert re.search(r"n = \d+|\d+ of \d+ (held-out )?samples", p["words"]), p["words"][:300]
    assert geo["overlaps"] == [], geo["overlaps"][:5]


@pytest.mark.browser
@pytest.mark.parametrize(("n", "width"), [(10, 1280), (60, 1280), (60, 700)])
def test_every_plot_drawn_and_no_labels_overlap(
    sweeps: dict[int, Analysis], n: int, width: int, tmp_path: Path
) -> None:
    a = sweeps[n]
    geo, status = _geometry(a.files["report.html"], tmp_path, width)
    _plots_drawn_apart(geo, status, PLOTS)
    # the front, and only the front, is labelled: one annotation per front point
    pareto = next(p for p in geo["plots"] if p["id"] == "plot-pareto_shapes-vqa")
    front = a.fronts["shapes-vqa"]
    assert pareto["annotations"] == int(front["on_front"].sum()) < len(front) + (n == 10)
    for label in front.loc[~front["on_front"], "label"]:
        assert f"| {label} |" not in f"| {pareto['words']} |"
    # error bars exactly when the records carry intervals
    cis = figures.interval(front, "accuracy") or figures.interval(front, "T_total_p95")
    assert (pareto["errorbars"] > 0) == (cis is not None)


@pytest.mark.browser
def test_the_overlap_check_fails_on_overlapping_labels(
    sweeps: dict[int, Analysis], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every front label put on one spot: the geometry must report the pairs
    monkeypatch.setattr(figures, "label_slots", lambda wanted, low, high, gap: [0.6] * len(wanted))
    from knoblab.analysis.report import write_report

    a = sweeps[60]
    files = write_report(a, tmp_path / "stacked")
    geo, status = _geometry(files["report.html"], tmp_path)
    assert 'data-status="ok"' in status
    stacked = [o for o in geo["overlaps"] if o["plot"] == "plot-pareto_shapes-vqa"]
    n = int(a.fronts["shapes-vqa"]["on_front"].sum())
    assert len(stacked) >= n * (n - 1) // 2 > 0


# --- records of the real runner: the reference model, and a user's adapter with its own knobs --


class OwnKnobs:
    """A user's model with knobs of its own names: ``resolution`` (numeric) and ``quality``
    (categorical); every answer is one token long, so decode has no output-token range."""

    name = "own-knobs"
    device = "cpu"
    dtype = "float32"

    def __init__(self) -> None:
        self.settings = {"resolution": 1, "quality": "draft"}
        self.w = np.random.default_rng(0).standard_normal((64, 64)) / 8.0

    def knobs(self) -> dict[str, KnobSpec]:
        return {
            "resolution": KnobSpec("resolution", (1, 2, 3, 4), 1, "image side / 112"),
            "quality": KnobSpec("quality", ("draft", "best"), "draft", "sampler preset"),
        }

    def apply_knobs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        for k, v in settings.items():
            check_knob(self.knobs(), k, v, self.name)
        self.settings |= dict(settings)
        return {}

    def _work(self, n: int) -> None:
        # ~0.1-1 ms, growing with the tokens and doubled by quality: configurations lie well
        # apart on every plot (a few us of work left them to timer noise, and two parity
        # points could land on one spot on a loaded machine)
        x = np.ones((8 * max(n, 1), 64))
        for _ in range(2 if self.settings["quality"] == "draft" else 4):
            x = np.tanh(x @ self.w)

    def preprocess(self, sample: Sample) -> Prepared:
        v = 8 * int(self.settings["resolution"]) + sample.sample_id % 3
        return Prepared(sample, 4 + sample.sample_id % 5, v, v, target_vision_tokens=v)

    def encode_vision(self, p: Prepared) -> Any:
        self._work(p.actual_vision_tokens)
        return p

    def prefill(self, p: Prepared, vision: Any) -> Any:
        self._work(p.actual_vision_tokens + p.input_text_tokens)
        return p

    def decode(self, state: Prepared, max_new_tokens: int) -> Generation:
        good = state.inputs.sample_id % 4 < int(self.settings["resolution"])
        return Generation([0], str(state.inputs.sample_id % 7) if good else "?")


@pytest.fixture(scope="module")
def own_knobs(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    root = tmp_path_factory.mktemp("own")
    cfg = {
        "dataset": {"name": "mine", "sampling": {"num_samples_per_epoch": None, "seed": 0}},
        "knobs": {"resolution": [1, 2, 3, 4], "quality": ["draft", "best"]},
        "design": {"name": "full"},
        "run": {"output_dir": str(root), "warmup_runs": 0, "progress": False},
    }
    res = run_sweep(cfg, adapter=OwnKnobs(), dataset=ListDataset.synthetic(8, name="mine"))
    return analyze(res.out_dir, root / "analysis")


@pytest.mark.browser
def test_a_user_adapter_with_its_own_knobs_renders_apart(
    own_knobs: Analysis, tmp_path: Path
) -> None:
    a = own_knobs
    assert a.results.knobs == ["quality", "resolution"] and len(a.results.configs) == 8
    plots = {"plot-pareto_mine", "plot-coupling_mine", "plot-stages", "plot-scaling"}
    plots |= {"plot-parity"} if a.evaluation is not None else set()
    plots |= {"plot-memory_mine"}  # the runner records peak memory (issue 15) for any adapter
    geo, status = _geometry(a.files["report.html"], tmp_path)
    _plots_drawn_apart(geo, status, plots)
    words = {p["id"]: p["words"] for p in geo["plots"]}
    assert (
        "resolution=1" in words["plot-coupling_mine"]
        and "quality=best" in words["plot-coupling_mine"]
    )
    # every answer is one token: the decode panel says so instead of drawing an empty fit
    assert (
        "output tokens = 1" in words["plot-scaling"] and "no fit is drawn" in words["plot-scaling"]
    )


@pytest.mark.browser
def test_the_reference_model_sweep_renders_apart(real_dir: Path, tmp_path: Path) -> None:
    a = analyze(real_dir, tmp_path / "a")
    geo, status = _geometry(a.files["report.html"], tmp_path)
    _plots_drawn_apart(geo, status, PLOTS | {"plot-memory_shapes-vqa"})  # runner records memory
