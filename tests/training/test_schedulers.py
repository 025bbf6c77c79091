"""The warmup-cosine schedule: a table of the edge cases public versions get wrong."""

from __future__ import annotations

import math

import pytest
import torch

from knoblab.errors import ConfigError
from knoblab.training.schedulers import LinearWarmupCosineAnnealingLR, warmup_cosine_lr

B, LO = 1.0, 0.1
HALF = LO + (B - LO) * 0.5

# (warmup, max_steps, warmup_start_lr, step, expected)
TABLE = [
    # warmup 0: base rate at step 0, cosine from there
    (0, 4, 0.0, 0, B),
    (0, 4, 0.0, 2, HALF),
    (0, 4, 0.0, 4, LO),
    # warmup 1: start rate at step 0, peak exactly at step 1
    (1, 5, 0.0, 0, 0.0),
    (1, 5, 0.0, 1, B),
    (1, 5, 0.0, 3, HALF),
    (1, 5, 0.0, 5, LO),
    # warmup 4 with a non-zero start rate: linear ramp
    (4, 8, 0.2, 0, 0.2),
    (4, 8, 0.2, 2, 0.6),
    (4, 8, 0.2, 4, B),
    # max = warmup + 1: peak at the end of warmup, eta_min one step later
    (3, 4, 0.0, 3, B),
    (3, 4, 0.0, 4, LO),
    # past the end: holds at eta_min, never climbs back
    (2, 6, 0.0, 6, LO),
    (2, 6, 0.0, 7, LO),
    (2, 6, 0.0, 100, LO),
    (0, 1, 0.0, 1000, LO),
]


@pytest.mark.parametrize(("warmup", "max_steps", "start", "step", "expected"), TABLE)
def test_table(warmup, max_steps, start, step, expected):
    got = warmup_cosine_lr(step, B, warmup, max_steps, warmup_start_lr=start, eta_min=LO)
    assert got == pytest.approx(expected, abs=1e-12)


def test_monotone_phases():
    lrs = [warmup_cosine_lr(s, B, 10, 50, eta_min=LO) for s in range(60)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # rising warmup
    assert max(lrs) == lrs[10] == B
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # never rises after peak
    assert math.isclose(lrs[35], LO + (B - LO) * 0.5 * (1 + math.cos(math.pi * 25 / 40)))


@pytest.mark.parametrize(("warmup", "max_steps"), [(5, 5), (5, 3), (0, 0), (-1, 4)])
def test_bad_schedule_is_a_config_error(warmup, max_steps):
    with pytest.raises(ConfigError) as exc:
        warmup_cosine_lr(0, B, warmup, max_steps)
    assert "\n" not in str(exc.value)
    assert ("max_steps" in str(exc.value)) or ("warmup_steps" in str(exc.value))


def test_torch_scheduler_matches_pure_function_and_resumes():
    def make():
        # two parameter groups with different base rates
        groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (B, 0.5)]
        return torch.optim.SGD(groups)

    opt = make()
    sched = LinearWarmupCosineAnnealingLR(opt, warmup_steps=3, max_steps=10, eta_min=LO)
    seen = []
    for _ in range(14):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for s, (lr0, lr1) in enumerate(seen):
        assert lr0 == pytest.approx(warmup_cosine_lr(s, B, 3, 10, eta_min=LO))
        assert lr1 == pytest.approx(warmup_cosine_lr(s, 0.5, 3, 10, eta_min=LO))

    # resume from a state_dict at step 6: identical rates from there on
    opt_a = make()
    sa = LinearWarmupCosineAnnealingLR(opt_a, warmup_steps=3, max_steps=10, eta_min=LO)
    for _ in range(6):
        opt_a.step()
        sa.step()
    opt_b = make()
    sb = LinearWarmupCosineAnnealingLR(opt_b, warmup_steps=3, max_steps=10, eta_min=LO)
    sb.load_state_dict(sa.state_dict())
    opt_b.load_state_dict(opt_a.state_dict())
    for s in range(6, 14):
        assert opt_b.param_groups[0]["lr"] == pytest.approx(seen[s][0])
        opt_b.step()
        sb.step()
