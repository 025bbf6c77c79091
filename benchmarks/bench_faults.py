"""Fault injection: does every fault end with nothing lost, nothing mixed, one clear line?

Claim (issue 16): after each injected fault a rerun (or the same run) ends with every
finished result kept, no record of another sweep mixed in, and at most one error line
and no traceback. The loop mirrors ``tests/faults/`` in compact form:

- ``sigkill``: ``knoblab profile`` (reference model, 6 configurations x 3 samples)
  killed with SIGKILL at a seeded random point, then rerun; the sample ids per
  configuration are compared with an uninterrupted sweep's.
- ``concurrent``: two sweeps (3 and 4 samples) released together into one folder;
  exactly one must run, the other get one line naming the holder.
- ``disk full``: ENOSPC at a record, samples.parquet and report.md (injected), and a
  real 48 KB tmpfs filling up where ``mount -t tmpfs`` is allowed (root).
- ``corrupt files``: a truncated, an empty and a random-bytes record, a dead writer's
  temporary file and a garbage lock file, then a rerun.
- ``bad dataset input``: a non-UTF-8 byte, UTF-16 with and without BOM, image paths
  leaving the folder (``../``, absolute, symlink), an image over the pixel cap, an
  ``hf_disk`` row with corrupt bytes.
- ``bad CLI value``: output folders that are files (profile, analyze, deep-profile,
  export-data), ``export-data num_samples=-1`` / ``abc``.

Columns: faults injected, survived (the promise held), samples lost (finished samples
missing afterwards, or good samples a bad input took with it), tracebacks printed.

    python benchmarks/bench_faults.py              # 4 kills, 2 concurrent trials
    python benchmarks/bench_faults.py --kills 8 --concurrent 4
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SWEEP = [
    "design=full",
    "knobs.tier=[low]",
    "knobs.top_k=[1,2,4]",
    "knobs.num_active_blocks=[2,4]",
    "dataset.size=20",
    "dataset.sampling.num_samples_per_epoch=3",
    "run.warmup_runs=0",
    "run.progress=false",
]
TASK = "shapes-vqa"
GATED = textwrap.dedent(
    """
    import os, sys, time, pathlib
    from knoblab import cli
    import knoblab.profiling.runner, knoblab.models.registry
    go = pathlib.Path(sys.argv[1])
    go.with_name(f"{go.name}.ready{os.getpid()}").touch()  # imports done
    while not go.exists():
        time.sleep(0.005)
    sys.exit(cli.main(sys.argv[2:]))
    """
)


def _quiet() -> Any:
    from rich.console import Console

    return Console(file=io.StringIO())


QUIET = _quiet()  # the in-process sweeps' tables are not the benchmark's output


class Tally:
    """Counts per fault kind: injected, survived, samples lost, tracebacks."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}

    def add(self, kind: str, survived: bool, lost: int = 0, tracebacks: int = 0) -> None:
        row = self.rows.setdefault(kind, [0, 0, 0, 0])
        row[0] += 1
        row[1] += int(survived)
        row[2] += lost
        row[3] += tracebacks


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "knoblab.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _ids(folder: Path) -> dict[str, list[int]]:
    from knoblab.profiling import records as rec

    out: dict[str, list[int]] = {}
    for r in rec.load_records(folder).values():
        key = rec.config_key(r["knobs"])
        ids = [int(s["sample_id"]) for s in r["per_sample_results"]]
        out[key] = ids if key not in out else out[key] + [-1]  # a duplicate shows as a mismatch
    return out


def _lost(want: dict[str, list[int]], got: dict[str, list[int]]) -> int:
    return sum(len(v) for k, v in want.items() if got.get(k) != v)


def _one_line(stderr: str) -> bool:
    return "Traceback" not in stderr and sum("error:" in ln for ln in stderr.splitlines()) == 1


def _journaled(folder: Path) -> int:
    """Units of work journaled so far (the journal's complete lines)."""
    try:
        return (folder / "journal.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


def bench_sigkill(t: Tally, root: Path, kills: int) -> None:

    base = _cli(["profile", *SWEEP, "run.output_dir=base"], root)
    want = _ids(root / "base" / TASK)
    assert base.returncode == 0 and len(want) == 6, base.stderr
    for seed in range(kills):
        rng = random.Random(seed)
        out = root / f"kill{seed}"
        # Interleaved rounds finalise records only at the end: kill after a random number
        # of journaled units of work (one line each), anywhere in the sweep.
        before, extra = rng.randint(0, 6 * 3 - 1), rng.uniform(0.0, 0.4)
        proc = subprocess.Popen(
            [sys.executable, "-m", "knoblab.cli", "profile", *SWEEP, f"run.output_dir={out}"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while proc.poll() is None and _journaled(out / TASK) < before:
            time.sleep(0.01)
        time.sleep(extra)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        again = _cli(["profile", *SWEEP, f"run.output_dir={out}"], root)
        got = _ids(out / TASK)
        tb = int("Traceback" in again.stderr)
        t.add("sigkill + rerun", again.returncode == 0 and got == want, _lost(want, got), tb)


def bench_concurrent(t: Tally, root: Path, trials: int) -> None:
    from knoblab.profiling import records as rec

    script = root / "gated.py"
    script.write_text(GATED)
    for trial in range(trials):
        go, out = root / f"go{trial}", f"run.output_dir=conc{trial}"
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(go), "profile", *SWEEP, out, *extra],
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for extra in ([], ["dataset.sampling.num_samples_per_epoch=4"])
        ]
        deadline = time.monotonic() + 300  # both at the gate (imports done), then go
        while time.monotonic() < deadline and len(list(root.glob(f"{go.name}.ready*"))) < 2:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.05)
        go.touch()
        res = [(p.wait(), p.stderr.read() if p.stderr else "") for p in procs]
        records = rec.load_records(root / f"conc{trial}" / TASK).values()
        sizes = {len(r["per_sample_results"]) for r in records}
        loser = [err for code, err in res if code == 2]
        ok = sorted(c for c, _ in res) == [0, 2] and len(records) == 6 and len(sizes) == 1
        ok = ok and _one_line(loser[0]) and "in use by another sweep" in loser[0]
        tb = sum("Traceback" in err for _, err in res)
        t.add("concurrent sweeps, one folder", ok, 0 if len(records) == 6 else 1, tb)


def _synthetic_cfg(out: Path) -> dict[str, Any]:
    return {
        "dataset": {"name": "synthetic", "sampling": {"num_samples_per_epoch": 4, "seed": 1}},
        "knobs": {"tier": ["low", "high"], "top_k": [1, 2], "num_active_blocks": [2, 4]},
        "design": {"name": "full"},
        "run": {"output_dir": str(out), "warmup_runs": 0, "progress": False},
    }


def _sweep(out: Path) -> Any:
    from knoblab.profiling.runner import run_sweep
    from knoblab.profiling.synthetic import ListDataset, WaitAdapter

    return run_sweep(
        _synthetic_cfg(out), adapter=WaitAdapter(), dataset=ListDataset.synthetic(8), console=QUIET
    )


@contextlib.contextmanager
def _enospc_at(target: str) -> Iterator[None]:
    import knoblab.atomic as atomic

    real, records = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        name = Path(dst).name
        if name.startswith("synthetic_"):
            records.append(name)
        if name == target or (target == "record" and len(records) == 4 and name in records):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    atomic.os.replace = replace  # type: ignore[assignment]
    try:
        yield
    finally:
        atomic.os.replace = real  # type: ignore[assignment]


def bench_disk_full(t: Tally, root: Path) -> None:
    from knoblab.errors import DataError

    want = _ids(_sweep(root / "full-base").out_dir)
    for target in ("record", "samples.parquet", "report.md"):
        out = root / f"full-{target}"
        msg = ""
        with _enospc_at(target):
            try:
                _sweep(out)
            except DataError as exc:
                msg = str(exc)
        ok = msg.startswith("disk full writing") and "\n" not in msg
        _sweep(out)  # the rerun, with room
        got = _ids(out / "synthetic")
        t.add("disk full (injected ENOSPC)", ok and got == want, _lost(want, got))
    _disk_full_tmpfs(t, root)


def _disk_full_tmpfs(t: Tally, root: Path) -> None:
    disk = root / "tmpfs"
    disk.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)], capture_output=True
        ).returncode
    ):
        return
    try:
        full = _cli(["profile", *SWEEP, f"run.output_dir={disk}"], root)
        survived = full.returncode == 2 and _one_line(full.stderr)
        survived = survived and "disk full writing" in full.stderr
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        again = _cli(["profile", *SWEEP, f"run.output_dir={disk}"], root)
        want = _ids(root / "base" / TASK) if (root / "base").exists() else None
        got = _ids(disk / TASK)
        lost = _lost(want, got) if want else 18 - sum(len(v) for v in got.values())
        tb = int("Traceback" in full.stderr) + int("Traceback" in again.stderr)
        t.add("disk full (48 KB tmpfs)", survived and again.returncode == 0 and lost == 0, lost, tb)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def bench_corrupt(t: Tally, root: Path) -> None:
    from knoblab.profiling.lock import LOCK_NAME

    out = root / "corrupt"
    first = _sweep(out)
    want, folder, names = _ids(first.out_dir), first.out_dir, sorted(first.records)
    data = (folder / names[0]).read_bytes()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    faults: list[Callable[[], object]] = [
        lambda: (folder / names[0]).write_bytes(data[: len(data) // 2]),
        lambda: (folder / names[1]).write_bytes(b""),
        lambda: (folder / names[2]).write_bytes(os.urandom(2000)),
        lambda: (folder / f".{names[3]}.{pid}.tmp").write_bytes(data[:100]),
        lambda: (folder / LOCK_NAME).write_bytes(os.urandom(64)),
    ]
    for fault in faults:
        fault()
    again = _sweep(out)
    got = _ids(folder)
    ok = got == want and sorted(again.ran) == names[:3] and not list(folder.glob(".*.tmp"))
    for _ in faults:
        t.add("corrupt / stray files in the folder", ok, _lost(want, got) // len(faults))


def _jsonl(folder: Path, n: int = 3) -> Path:
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        Image.new("RGB", (8, 8)).save(folder / "images" / f"{i}.png")
        lines.append({"sample_id": i, "image": f"images/{i}.png", "question": "q?", "answers": []})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def _bad_inputs(root: Path) -> list[tuple[str, Callable[[Path], Path], dict[str, Any], int]]:
    """(name, make the manifest, extra config, good samples expected)."""
    from PIL import Image

    def byte(p: Path) -> Path:
        p.write_bytes(p.read_bytes().replace(b'"q?"', b'"q\xe9?"', 1))
        return p

    def utf16(p: Path, bom: bool) -> Path:
        p.write_bytes(p.read_text().encode("utf-16" if bom else "utf-16-le"))
        return p

    def path_line(image: str) -> Callable[[Path], Path]:
        def make(p: Path) -> Path:
            row = {"sample_id": 99, "image": image, "question": "q?", "answers": []}
            with p.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            return p

        return make

    def symlink(p: Path) -> Path:
        (p.parent / "images" / "out.png").symlink_to(secret)
        return path_line("images/out.png")(p)

    def huge(p: Path) -> Path:
        Image.new("1", (8200, 8200)).save(p.parent / "images" / "0.png")
        return p

    secret = root / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    return [
        ("non-UTF-8 byte", byte, {}, 2),
        ("UTF-16 with BOM", lambda p: utf16(p, True), {}, 3),
        ("UTF-16 without BOM", lambda p: utf16(p, False), {}, -1),  # -1: one DataError line
        ("path ../", path_line("../secret.png"), {}, 3),
        ("absolute path", path_line(str(secret)), {}, 3),
        ("symlink out", symlink, {}, 3),
        ("image over 64 MP", huge, {}, 2),
    ]


def bench_bad_inputs(t: Tally, root: Path) -> None:
    from knoblab.data.formats import build_jsonl
    from knoblab.errors import DataError

    warnings.simplefilter("ignore")
    for i, (_name, make, extra, good) in enumerate(_bad_inputs(root)):
        path = make(_jsonl(root / f"bad{i}"))
        tb, loaded = 0, -1
        try:
            ds = build_jsonl({"path": str(path), **extra})
            loaded = 0
            for j in range(len(ds)):
                with contextlib.suppress(DataError):
                    ds[j]
                    loaded += 1
        except DataError as exc:
            ok_line = "\n" not in str(exc)
            loaded = -1 if ok_line else -2
        except Exception:  # noqa: BLE001 - a traceback is what is counted here
            tb = 1
        lost = 0 if loaded == good or good < 0 else max(0, good - loaded)
        t.add("bad dataset input", loaded == good and tb == 0, lost, tb)
    _bad_hf_row(t, root)


def _bad_hf_row(t: Tally, root: Path) -> None:
    import datasets
    from PIL import Image

    from knoblab.data.formats import build_hf_disk

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    imgs = [{"bytes": buf.getvalue(), "path": None}, {"bytes": b"\x89PNG junk", "path": None}]
    ds = datasets.Dataset.from_dict(
        {"qid": [7, 8], "question": ["a", "b"], "answers": [["a"], ["b"]], "image": imgs},
        features=datasets.Features(
            {
                "qid": datasets.Value("int64"),
                "question": datasets.Value("string"),
                "answers": datasets.Sequence(datasets.Value("string")),
                "image": datasets.Image(),
            }
        ),
    )
    ds.save_to_disk(str(root / "hf"))
    out = root / "hf-out"
    from knoblab.profiling.runner import run_sweep
    from knoblab.profiling.synthetic import WaitAdapter

    data = build_hf_disk({"path": str(root / "hf"), "columns": {"sample_id": "qid"}})
    cfg = _synthetic_cfg(out) | {"dataset": {"name": "hf", "sampling": {}}}
    result = run_sweep(cfg, adapter=WaitAdapter(), dataset=data, console=QUIET)
    (record, *_) = result.records.values()
    rows = record["per_sample_results"]
    ok = [r["sample_id"] for r in rows] == [7, 8] and "[row 1]" in (rows[1]["error"] or "")
    t.add("bad dataset input", ok, int(rows[0]["status"] != "ok"))


def bench_cli(t: Tally, root: Path) -> None:
    from knoblab import cli

    (root / "blocker").write_text("x")
    (root / "results").mkdir(exist_ok=True)
    cases = [
        ["profile", "run.output_dir=blocker"],
        ["analyze", "results", "--out", "blocker"],
        ["deep-profile", "deep.output_dir=blocker"],
        ["export-data", "out_dir=blocker"],
        ["export-data", "out_dir=x", "num_samples=-1"],
        ["export-data", "out_dir=x", "num_samples=abc"],
    ]
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for argv in cases:
            err = io.StringIO()
            tb = 0
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = cli.main(argv)
            except Exception:  # noqa: BLE001 - counted
                code, tb = -1, 1
            tb += int("Traceback" in err.getvalue())
            t.add("bad CLI value / out dir", code == 2 and _one_line(err.getvalue()), 0, tb)
    finally:
        os.chdir(cwd)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kills", type=int, default=4, help="SIGKILL + rerun trials")
    ap.add_argument("--concurrent", type=int, default=2, help="two-sweeps-at-once trials")
    args = ap.parse_args()
    import logging

    import datasets
    from rich.table import Table

    from knoblab.console import console

    logging.getLogger("knoblab.data.formats").setLevel(logging.ERROR)  # the skips are expected
    datasets.disable_progress_bars()
    t = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        bench_sigkill(t, root, args.kills)
        bench_concurrent(t, root, args.concurrent)
        bench_disk_full(t, root)
        bench_corrupt(t, root)
        bench_bad_inputs(t, root)
        bench_cli(t, root)
        seconds = time.perf_counter() - t0
    table = Table(title=f"knoblab fault injection ({seconds:.0f} s)")
    for col in ("fault", "injected", "survived", "samples lost", "tracebacks"):
        table.add_column(col, justify="left" if col == "fault" else "right")
    total = [0, 0, 0, 0]
    for kind, row in t.rows.items():
        table.add_row(kind, *map(str, row))
        total = [a + b for a, b in zip(total, row, strict=True)]
    table.add_row("[bold]all[/bold]", *(f"[bold]{v}[/bold]" for v in total))
    console().print(table)


if __name__ == "__main__":
    main()
