"""A held-out adapter whose per-sample cost is known by construction: fixed matmuls.

Shared by ``bench_drift.py`` (cost = ``matmuls * work``, knob ``work``) and
``bench_early_stop.py`` (cost = ``matmuls * (1 + spread * z_sample)``, knob ``spread``).
Fixed CPU work, not sleeps or spins on the clock: load from other processes slows it
as it slows a real model. The same operands every time (a chained product would drift
into denormal floats and slow down with the count). Its knob has its own name: nothing
in knoblab knows it.
"""

from __future__ import annotations

from typing import Any

import torch

from knoblab.models.adapter import Generation, KnobSpec, Prepared, check_knob


class MatmulWork:
    """Base: one knob (``knob``, ``values``), prefill = :meth:`matmuls_for` 128x128 matmuls."""

    name, device, dtype = "matmul-work", "cpu", "float32"
    knob: str = "work"
    values: tuple[Any, ...] = (1,)
    describe: str = "multiples of a fixed matmul workload"

    def __init__(self, matmuls: int, size: int = 128, scale: float = 1.0):
        self.matmuls, self.setting = matmuls, self.values[0]
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(size, size, generator=g)
        self.b = torch.randn(size, size, generator=g) * scale
        self.out = torch.empty(size, size)

    def knobs(self) -> dict[str, KnobSpec]:
        return {self.knob: KnobSpec(self.knob, self.values, self.values[0], self.describe)}

    def apply_knobs(self, settings: Any) -> dict[str, Any]:
        for k, v in settings.items():
            check_knob(self.knobs(), k, v, self.name)
        self.setting = type(self.values[0])(settings.get(self.knob, self.values[0]))
        return {self.knob: self.setting}

    def matmuls_for(self, prepared: Prepared) -> int:
        raise NotImplementedError

    def preprocess(self, sample: Any) -> Prepared:
        return Prepared(inputs=sample, input_text_tokens=1)

    def encode_vision(self, prepared: Prepared) -> Any:
        return None

    @torch.inference_mode()
    def prefill(self, prepared: Prepared, vision: Any) -> Any:
        for _ in range(self.matmuls_for(prepared)):
            torch.mm(self.a, self.b, out=self.out)
        return prepared.inputs

    def decode(self, state: Any, max_new_tokens: int) -> Generation:
        return Generation(token_ids=[1], text=state.answers[0])
