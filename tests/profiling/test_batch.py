"""measure_batch: TTFT / TPOT / ITL / throughput of a batch, batched or looped (user adapters)."""

from __future__ import annotations

import pytest

from knoblab.data.shapes import ShapesVQA
from knoblab.models.adapter import Generation, KnobSpec, Prepared, supports_batching
from knoblab.models.reference.adapter import ReferenceAdapter
from knoblab.models.reference.weights import random_reference
from knoblab.profiling.batch import measure_batch, set_peak_memory
from knoblab.profiling.energy import EnergyMeter
from knoblab.profiling.memory import MemorySpan
from knoblab.profiling.synthetic import ListDataset


@pytest.fixture(scope="module")
def reference():
    model = random_reference(seed=1)
    with __import__("torch").no_grad():
        model.lm.embed.weight[model.tokenizer.eos_id] *= 2  # answers of 1..4 tokens
    return ReferenceAdapter(model)


@pytest.fixture(scope="module")
def prepared(reference):
    reference.apply_knobs({"tier": "low", "top_k": 2})
    ds = ShapesVQA(8, seed=5)
    return [reference.preprocess(ds[i]) for i in range(8)]


def test_batched_figures_follow_vllm_definitions(reference, prepared):
    m = measure_batch(reference, prepared, 5)
    assert m.batched and m.batch_size == 8
    lens = [g.output_tokens for g in m.generations]
    assert len(set(lens)) > 1 and len(m.step_ms) == max(lens) - 1
    for row, n in zip(m.rows(), lens, strict=True):
        assert row["T_ttft"] == pytest.approx(row["T_vision_total"] + row["T_LLM_prefill"])
        assert row["itl_ms"] == m.step_ms[: n - 1]  # the steps that gave it a token
        assert row["T_LLM_decode"] == pytest.approx(sum(row["itl_ms"]))
        assert row["T_total"] == pytest.approx(row["T_ttft"] + row["T_LLM_decode"])
        if n > 1:
            assert row["T_tpot"] == pytest.approx(row["T_LLM_decode"] / (n - 1))
        else:
            assert row["T_tpot"] is None and row["itl_ms"] == []
        assert row["T_decode_per_token"] == row["T_tpot"]
        assert row["output_tokens"] == n and row["batch_size"] == 8
        assert row["throughput_samples_s"] == pytest.approx(8 / (m.wall_ms / 1000))
        assert row["throughput_tokens_s"] == pytest.approx(sum(lens) / (m.wall_ms / 1000))
        assert row["weights_bytes"] == sum(t.nbytes for t in reference.model.state_dict().values())
    for row, p in zip(m.rows(), prepared, strict=True):
        seq = p.input_text_tokens + p.actual_vision_tokens + row["output_tokens"] - 1
        assert row["kv_cache_bytes"] == reference.kv_cache_bytes(seq)
    with MemorySpan("cpu") as span:
        pass
    set_peak_memory(m.per_sample, span.result)
    assert all(r["peak_memory_bytes"] == span.result.peak_bytes > 0 for r in m.rows())
    # the slowest request ends at the batch's last mark
    assert max(r["T_total"] for r in m.rows()) == pytest.approx(m.wall_ms)


def test_batch_of_one_equals_the_protocol(reference, prepared):
    for p in prepared[:3]:
        one = reference.decode(reference.prefill(p, reference.encode_vision(p)), 5)
        m = measure_batch(reference, [p], 5)
        assert m.generations[0].token_ids == one.token_ids


def test_energy_is_split_over_samples_and_tokens(reference, prepared, tmp_path):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "energy_uj").write_text("0\n")
    (zone / "max_energy_range_uj").write_text("1000000000\n")
    meter = EnergyMeter("cpu", powercap=tmp_path)

    class Ticking(EnergyMeter):  # the counter advances 4 J between the two reads
        def stop(self, start):
            (zone / "energy_uj").write_text("4000000\n")
            return super().stop(start)

    meter.__class__ = Ticking
    m = measure_batch(reference, prepared[:4], 5, energy=meter)
    rows = m.rows()
    tokens = sum(g.output_tokens for g in m.generations)
    assert m.energy_j == pytest.approx(4.0)
    assert all(r["energy_j"] == pytest.approx(1.0) for r in rows)
    assert all(r["energy_j_per_token"] == pytest.approx(4.0 / tokens) for r in rows)
    unavailable = measure_batch(
        reference, prepared[:2], 5, energy=EnergyMeter("cpu", powercap=tmp_path / "x")
    )
    assert all(
        r["energy_j"] is None and "does not exist" in r["energy_unavailable_reason"]
        for r in unavailable.rows()
    )


class CountingAdapter:
    """A user's own adapter, own knob names, no batched stages: answers its sample id."""

    name, device, dtype = "user", "cpu", "float32"

    def knobs(self):
        return {"beam_budget": KnobSpec("beam_budget", (1, 2), 1)}

    def apply_knobs(self, settings):
        self.budget = settings.get("beam_budget", 1)
        return {"beam_budget": self.budget}

    def preprocess(self, sample):
        return Prepared(inputs=sample, input_text_tokens=3)

    def encode_vision(self, prepared):
        return None

    def prefill(self, prepared, vision):
        return prepared.inputs

    def decode(self, state, max_new_tokens):
        n = min(1 + state.sample_id % 3, max_new_tokens)
        return Generation(token_ids=list(range(n)), text=str(state.sample_id))


def test_user_adapter_without_batched_stages_runs_one_after_another():
    adapter = CountingAdapter()
    adapter.apply_knobs({"beam_budget": 2})
    assert not supports_batching(adapter)
    ds = ListDataset.synthetic(5)
    prepared = [adapter.preprocess(ds[i]) for i in range(5)]
    m = measure_batch(adapter, prepared, 4)
    assert not m.batched and m.step_ms == []
    assert [g.text for g in m.generations] == ["0", "1", "2", "3", "4"]
    for row, g in zip(m.rows(), m.generations, strict=True):
        assert row["itl_ms"] is None and row["batched"] is False
        assert row["kv_cache_bytes"] is None and row["weights_bytes"] is None  # it does not say
        assert row["T_ttft"] == pytest.approx(row["T_vision_total"] + row["T_LLM_prefill"])
        n = g.output_tokens
        assert (row["T_tpot"] is None) == (n == 1)
    assert m.T_vision_total == pytest.approx(sum(r["T_vision_total"] for r in m.rows()))


def test_empty_batch_is_an_error(reference):
    with pytest.raises(ValueError, match="at least one"):
        measure_batch(reference, [], 4)
