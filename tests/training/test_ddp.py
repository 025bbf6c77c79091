"""Two-process DDP on CPU (gloo): each rank trains on its own shard of the weighted draw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import ConcatDataset

from knoblab.sampling import WeightedMultiDatasetSampler
from knoblab.training.toy import ToyDataset

SCRIPT = Path(__file__).with_name("ddp_train_script.py")


@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_two_rank_ddp_shards_are_disjoint_and_cover_the_draw(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parents[2] / "src")}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(SCRIPT),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == pytest.approx(
        ranks[1]["weights"], rel=1e-6
    )  # gradients were synced

    # the same draw the data module makes: toy.yaml's two datasets, seed 0, 64 draws per epoch
    clean, noisy = ToyDataset(512, seed=0), ToyDataset(512, seed=1, noise=0.5)
    concat = ConcatDataset([clean, noisy])
    sampler = WeightedMultiDatasetSampler([512, 512], [1.0, 1.0], num_samples=64, seed=0)
    for epoch in (0, 1):
        draw = sampler.draw(epoch, np.arange(64))
        feats = [float(concat[int(i)][0][0]) for i in draw]
        got = [ranks[r]["seen"][str(epoch)] for r in (0, 1)]
        # rank r trained on positions r, r+2, ...: disjoint positions whose union is the whole draw
        assert got[0] == pytest.approx(feats[0::2]) and got[1] == pytest.approx(feats[1::2])
        assert len(got[0]) == len(got[1]) == 32
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
