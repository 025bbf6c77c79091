"""Batched inference of the reference VLM: each sample's answer equals its batch-1 answer."""

from __future__ import annotations

import pytest
import torch

from knoblab.data.shapes import ShapesVQA
from knoblab.models.adapter import BatchState, supports_batching
from knoblab.models.reference.adapter import ReferenceAdapter
from knoblab.models.reference.weights import load_reference, random_reference


@pytest.fixture(scope="module")
def samples():
    ds = ShapesVQA(8, seed=5)
    return [ds[i] for i in range(8)]


@pytest.fixture(scope="module")
def trained() -> ReferenceAdapter:
    return ReferenceAdapter(load_reference(None))


@pytest.fixture(scope="module")
def untrained() -> ReferenceAdapter:
    return ReferenceAdapter(random_reference(seed=3))


@pytest.fixture(scope="module")
def eos_prone() -> ReferenceAdapter:
    """Random weights with EOS made likelier: answers of 1 to 4 tokens on these samples."""
    model = random_reference(seed=1)
    eos = model.tokenizer.eos_id
    with torch.no_grad():
        model.lm.embed.weight[eos] *= 2
    return ReferenceAdapter(model)


def batch1(adapter, prepared, max_new):
    return [adapter.decode(adapter.prefill(p, adapter.encode_vision(p)), max_new) for p in prepared]


def batched(adapter, prepared, max_new):
    batch = adapter.collate(prepared)
    state = adapter.prefill_batch(batch, adapter.encode_vision_batch(batch), max_new)
    steps = 0
    while not all(state.finished):
        adapter.decode_step_batch(state)
        steps += 1
    return adapter.finish_batch(state), steps


@pytest.mark.parametrize(
    "knobs",
    [
        {"tier": "high", "top_k": 2, "num_active_blocks": 4},
        {"tier": "low", "top_k": 1, "num_active_blocks": 2},
        {"vision_tokens": 54, "top_k": 4, "num_active_blocks": 3},
    ],
)
@pytest.mark.parametrize("which", ["trained", "untrained", "eos_prone"])
def test_batched_answers_equal_batch_one(request, samples, knobs, which):
    adapter = request.getfixturevalue(which)
    adapter.apply_knobs(knobs)
    prepared = [adapter.preprocess(s) for s in samples]
    lengths = {p.actual_vision_tokens + p.input_text_tokens for p in prepared}
    assert len(lengths) > 1  # the batch is padded: the case under test
    one = batch1(adapter, prepared, 5)
    many, steps = batched(adapter, prepared, 5)
    assert [g.token_ids for g in many] == [g.token_ids for g in one]
    assert [g.text for g in many] == [g.text for g in one]
    assert steps == max(g.output_tokens for g in one) - 1


def test_prefill_logits_match_batch_one(untrained, samples):
    """Stronger than equal argmax: the padded rows' logits equal batch-1's up to rounding."""
    untrained.apply_knobs({"tier": "medium", "top_k": 2, "num_active_blocks": 4})
    prepared = [untrained.preprocess(s) for s in samples[:5]]
    batch = untrained.collate(prepared)
    state = untrained.prefill_batch(batch, untrained.encode_vision_batch(batch), 3)
    inner = state.inner
    for j, p in enumerate(prepared):
        alone = untrained.prefill(p, untrained.encode_vision(p))
        assert torch.allclose(inner.logits[j], alone.logits, atol=1e-4, rtol=1e-4)
        # the left-padded cache row holds this sample's batch-1 cache after its padding
        for block, (k, v) in alone.cache.items():
            bk, bv = inner.cache[block]
            assert torch.allclose(bk[j, :, inner.pad[j] :], k[0], atol=1e-5)
            assert torch.allclose(bv[j, :, inner.pad[j] :], v[0], atol=1e-5)
            assert not inner.key_valid[j, : inner.pad[j]].any()
            assert inner.key_valid[j, inner.pad[j] :].all()


def test_finished_samples_leave_the_batch(eos_prone, samples):
    """A sample that stops at EOS is dropped; the others still match batch 1."""
    trained = eos_prone
    trained.apply_knobs({"tier": "low", "top_k": 2, "num_active_blocks": 4})
    prepared = [trained.preprocess(s) for s in samples]
    one = batch1(trained, prepared, 6)
    lens = [g.output_tokens for g in one]
    assert min(lens) < max(lens), lens  # some stop early: the batch shrinks
    batch = trained.collate(prepared)
    state = trained.prefill_batch(batch, trained.encode_vision_batch(batch), 6)
    sizes = []
    while not all(state.finished):
        trained.decode_step_batch(state)
        sizes.append(len(state.inner.rows))
    assert sizes == [sum(n > k for n in lens) for k in range(1, max(lens))]
    assert state.token_ids == [g.token_ids for g in one]


def test_cap_and_protocol(trained, samples):
    assert supports_batching(trained)
    trained.apply_knobs({"tier": "low"})
    prepared = [trained.preprocess(s) for s in samples[:3]]
    gens, steps = batched(trained, prepared, 1)
    assert steps == 0 and all(g.output_tokens == 1 for g in gens)
    state = BatchState.start(2, 2)
    state.push(0, 7, eos=False)
    state.push(1, 3, eos=True)
    assert state.finished == [False, True] and state.active() == [0]
    state.push(0, 8, eos=False)
    assert state.finished == [True, True] and state.token_ids == [[7, 8], [3]]
