"""E1: stage shares and scaling fits recover a known linear law."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knoblab.analysis.load import load_results
from knoblab.analysis.stages import fit_line, scaling_fits, stage_shares
from knoblab.analysis.synthetic import LatencyLaw


def test_shares_sum_to_one_and_match_the_law(exact_dir: Path) -> None:
    sh = stage_shares(load_results(exact_dir))
    total = sh[["share_vision", "share_prefill", "share_decode", "share_other"]].sum(axis=1)
    np.testing.assert_allclose(total, 1.0)
    law = LatencyLaw()
    np.testing.assert_allclose(sh["other_mean"], law.other, atol=1e-9)
    assert (sh["T_total_mean"].diff().dropna() >= 0).all()
    assert set(sh["dominant"]) <= {"vision", "prefill", "decode", "other"}


def test_scaling_fits_recover_known_slopes(exact_dir: Path) -> None:
    law = LatencyLaw()
    fits = scaling_fits(load_results(exact_dir))
    for _, f in fits[fits.group != "all"].iterrows():
        k, b = f.top_k, f.num_active_blocks
        if f.stage == "prefill":
            slope = b * (law.block_per_token + law.expert_per_token * k)
            intercept = law.prefill_base + b * law.block_base
        else:
            slope = law.step_base + b * (law.step_per_block + law.step_per_expert * k)
            intercept = -slope  # D = output_tokens - 1 decode steps
        assert f.slope == pytest.approx(slope, rel=1e-9)
        assert f.intercept == pytest.approx(intercept, rel=1e-6, abs=1e-9)
        assert f.r2 == pytest.approx(1.0)
    assert len(fits[fits.group == "all"]) == 2


def test_fit_line_constant_x_has_no_slope() -> None:
    f = fit_line(np.array([3.0, 3.0]), np.array([1.0, 2.0]))
    assert np.isnan(f.slope) and f.intercept == 1.5
