"""The reference VLM: every knob changes the computation, KV cache == recomputation, determinism."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from knoblab.data.shapes import ShapesVQA
from knoblab.errors import ConfigError
from knoblab.models.reference import (
    ReferenceConfig,
    WordTokenizer,
    collate,
    plan_image,
    prepare_image,
    random_reference,
)
from knoblab.models.tiling import plan_tiling

CFG = ReferenceConfig()


@pytest.fixture(scope="module")
def model():
    return random_reference(seed=0).eval()


@pytest.fixture(scope="module")
def sample():
    return ShapesVQA(8, seed=3)[1]


def vision_input(sample, tier="high", cfg=CFG):
    plan = plan_image(sample.image, cfg, tier=tier)
    return prepare_image(sample.image, plan, cfg), plan


def prompt(model, sample):
    return model.tokenizer.encode(sample.question) + [model.tokenizer.sep_id]


def test_tokens_per_crop_is_a_model_property() -> None:
    assert CFG.tokens_per_crop == (CFG.crop_size // CFG.patch_size) ** 2
    assert ReferenceConfig(crop_size=32, patch_size=8, max_seq_len=400).tokens_per_crop == 16


def test_tier_changes_token_count(model, sample) -> None:
    counts = {}
    for tier in ("low", "medium", "high"):
        vi, plan = vision_input(sample, tier)
        emb = model.encode_vision(vi)
        assert emb.shape == (plan.actual_tokens, CFG.d_model)
        assert vi.pixels.shape[0] == plan.num_crops + 1
        counts[tier] = emb.shape[0]
    assert counts["low"] < counts["medium"] < counts["high"]


def test_invalid_patches_never_reach_the_lm() -> None:
    # 4x4 patches per crop, and a 1:3 image in one tile: the tile's top and bottom rows are padding.
    cfg = ReferenceConfig(crop_size=32, patch_size=8, max_seq_len=400)
    model = random_reference(cfg).eval()
    img = Image.new("RGB", (300, 100), (200, 30, 30))
    plan = plan_tiling(100, 300, tokens_per_crop=16, patch_size=8, crop_size=32, max_crops=1)
    vi = prepare_image(img, plan, cfg)
    assert int((vi.patch_index == -100).sum()) == 8
    assert vi.patch_index[vi.patch_index >= 0].tolist() == list(range(plan.actual_tokens))
    assert (
        model.encode_vision(vi).shape[0] == plan.actual_tokens == 24 < plan.theoretical_tokens == 32
    )


def test_top_k_changes_experts_used_and_outputs(model, sample) -> None:
    vi, _ = vision_input(sample)
    ids = prompt(model, sample)
    outs, used = {}, {}
    for k in (1, 2, 4):
        model.set_knobs(top_k=k, num_active_blocks=CFG.n_layers)
        outs[k] = model.full_logits(vi, ids)
        moe = model.lm.blocks[0].moe
        used[k] = int(moe.last_tokens_per_expert.sum())
    model.set_knobs(top_k=CFG.top_k)
    n_tokens = outs[1].shape[0]
    assert used == {1: n_tokens, 2: 2 * n_tokens, 4: 4 * n_tokens}  # token-expert pairs
    assert not torch.allclose(outs[1], outs[2])
    assert not torch.allclose(outs[2], outs[4])


def test_fewer_blocks_run_fewer_blocks_and_change_outputs(model, sample) -> None:
    vi, _ = vision_input(sample)
    ids = prompt(model, sample)
    calls: list[int] = []
    hooks = [
        b.register_forward_hook(lambda m, i, o, n=n: calls.append(n))
        for n, b in enumerate(model.lm.blocks)
    ]
    try:
        model.set_knobs(num_active_blocks=2)
        assert model.active_block_indices == [0, 1]
        half = model.full_logits(vi, ids)
        assert calls == [0, 1]
        calls.clear()
        model.set_knobs(num_active_blocks=CFG.n_layers)
        full = model.full_logits(vi, ids)
        assert calls == list(range(CFG.n_layers))
    finally:
        for h in hooks:
            h.remove()
    assert not torch.allclose(half, full)


@pytest.mark.parametrize("top_k, blocks", [(2, 4), (1, 2), (4, 3)])
def test_kv_cache_decoding_equals_full_recomputation(
    model, sample, top_k: int, blocks: int
) -> None:
    model.set_knobs(top_k=top_k, num_active_blocks=blocks)
    vi, _ = vision_input(sample)
    ids = prompt(model, sample)
    extra = [5, 17, 30]  # arbitrary continuation tokens
    with torch.inference_mode():
        state = model.prefill(model.encode_vision(vi), ids)
        cached = [state.logits]
        for tok in extra:
            state = model.decode_step(tok, state)
            cached.append(state.logits)
    full = model.full_logits(vi, ids, extra)[-(len(extra) + 1) :]
    model.set_knobs(top_k=CFG.top_k, num_active_blocks=CFG.n_layers)
    torch.testing.assert_close(torch.stack(cached), full, atol=1e-4, rtol=1e-4)


def test_generate_is_deterministic(sample) -> None:
    a, b = random_reference(seed=0).eval(), random_reference(seed=0).eval()
    vi, _ = vision_input(sample)
    ids = prompt(a, sample)
    assert a.generate(vi, ids, 4) == b.generate(vi, ids, 4) == a.generate(vi, ids, 4)
    c = random_reference(seed=1).eval()
    assert not torch.allclose(a.full_logits(vi, ids), c.full_logits(vi, ids))


def test_generate_stops_at_eos_or_max(model, sample) -> None:
    vi, _ = vision_input(sample)
    out = model.generate(vi, prompt(model, sample), 3)
    assert 1 <= len(out) <= 3
    assert model.tokenizer.eos_id not in out[:-1]


def test_dense_and_sparse_moe_agree(model) -> None:
    moe = model.lm.blocks[1].moe
    x = torch.randn(2, 7, CFG.d_model)
    try:
        moe.dense = True
        d = moe(x, 2)
        moe.dense = False
        s = moe(x, 2)
    finally:
        moe.dense = None
    torch.testing.assert_close(d, s, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("top_k", [1, 3])
def test_sparse_moe_trains_like_dense(top_k) -> None:
    """Training uses sparse dispatch: same output and gradients as dense, and every
    expert's weights get a gradient (zero when no token chose it), as DDP requires."""
    from knoblab.models.reference.moe import MoEFeedForward

    torch.manual_seed(0)
    moe = MoEFeedForward(CFG.d_model, 16, num_experts=4).train()
    with torch.no_grad():  # positive inputs: experts 0, 1, 2 score > 0, expert 3 scores 0
        moe.router.weight.zero_()
        moe.router.weight[0, 0], moe.router.weight[1, 1], moe.router.weight[2, 2] = 3.0, 2.0, 1.0
    x = torch.rand(2, 5, CFG.d_model) + 0.1  # so at top_k <= 3 no token picks expert 3
    grads = {}
    for dense in (True, False):
        moe.zero_grad(set_to_none=True)
        moe.dense = dense
        out = moe(x, top_k)
        (out**2).sum().backward()
        grads[dense] = (out.detach(), {n: p.grad for n, p in moe.named_parameters()})
    torch.testing.assert_close(grads[True][0], grads[False][0], atol=1e-5, rtol=1e-5)
    for name, g in grads[False][1].items():
        assert g is not None, name
        torch.testing.assert_close(g, grads[True][1][name], atol=1e-4, rtol=1e-4)
    assert moe.last_tokens_per_expert.tolist()[3] == 0
    assert grads[False][1]["w_in"][3].abs().sum() == 0


def test_knob_errors_name_value_and_range(model) -> None:
    with pytest.raises(ConfigError, match=r"knobs.top_k=5 .*1..4"):
        model.set_knobs(top_k=5)
    with pytest.raises(ConfigError, match=r"knobs.num_active_blocks=0 .*1..4"):
        model.set_knobs(num_active_blocks=0)
    with pytest.raises(ConfigError, match="knobs.num_active_blocks=5"):
        model.set_knobs(num_active_blocks=5)


def test_loss_trains_on_answer_tokens_only() -> None:
    torch.manual_seed(0)
    model = random_reference(seed=0).train()
    ds = ShapesVQA(4, seed=5)
    batch = collate([ds[i] for i in range(4)], tier=["low", "medium"])
    assert len(batch) == 4 and sum(batch.crop_counts) == batch.pixels.shape[0]
    loss = model.loss(batch, top_k=2, num_active_blocks=3, aux_loss_coef=0.0, patch_loss_coef=0.0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # Initial loss is about log(vocab) (uniform over the answer and <eos> targets).
    assert abs(loss.item() - torch.log(torch.tensor(float(CFG.vocab_size))).item()) < 1.0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = loss.item()
    for _ in range(10):
        opt.zero_grad()
        loss = model.loss(batch, top_k=2, num_active_blocks=3, patch_loss_coef=0.0)
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.5  # it can fit a batch: gradients reach the answer


def test_loss_ignores_blocks_it_does_not_run() -> None:
    model = random_reference(seed=0).train()
    ds = ShapesVQA(4, seed=5)
    batch = collate([ds[i] for i in range(4)], tier="low")
    model.loss(batch, num_active_blocks=2).backward()
    assert model.lm.blocks[3].attn.qkv.weight.grad is None
    assert model.lm.blocks[1].attn.qkv.weight.grad is not None


def test_tokenizer_round_trip() -> None:
    tok = WordTokenizer.load()
    assert len(tok) == CFG.vocab_size
    assert tok.decode(tok.encode("Is the red circle left of the blue square?")) == (
        "is the red circle left of the blue square ?"
    )
    assert tok.encode("zebra") == [tok.unk_id]
    # A code is spelled WordPiece-style and glued back together by decode.
    code = tok.encode("40715")
    assert [tok.tokens[i] for i in code] == ["4", "##0", "##7", "##1", "##5"]
    assert tok.decode(code) == "40715"
    assert tok.decode(tok.encode("what is the code ? 7 09")) == "what is the code ? 7 09"
    assert tok.decode([tok.index["##3"], tok.index["##4"]]) == "34"  # a lone piece opens a word
    assert tok.encode("4x") == [tok.unk_id]  # "x" has no piece: the whole word is unknown
    old = tok.truncated(68)  # reference-v1's vocabulary: no codes
    assert len(old) == 68 and old.encode("code 42") == [old.unk_id, old.unk_id]
    ds = ShapesVQA(200, variant="hard")
    for i in range(200):  # every shapes-vqa question and answer is in the vocabulary
        s = ds[i]
        assert tok.unk_id not in tok.encode(s.question + " " + s.answers[0])


def test_patch_labels_mark_object_centres() -> None:
    from knoblab.data.sample import Sample
    from knoblab.data.shapes import COLORS, SHAPES
    from knoblab.models.reference.batch import GLYPH_CLASS0
    from knoblab.models.reference.vocab import CODE_CHARS

    ds = ShapesVQA(12, seed=2, variant="hard")
    samples = [ds[i] for i in range(12)]
    batch = collate(samples, tier="high")
    seen_code = False
    assert batch.patch_labels is not None
    assert batch.patch_labels.shape == batch.valid.shape
    assert (batch.patch_labels[~batch.valid] == -100).all()
    tpc = CFG.tokens_per_crop
    start = 0
    for s, n in zip(samples, batch.crop_counts, strict=True):
        lab = batch.patch_labels[start * tpc : (start + n) * tpc]
        glob = lab[:tpc]  # the global crop sees every object once (centres on a border: twice)
        want = {
            1 + list(COLORS).index(o["color"]) * len(SHAPES) + SHAPES.index(o["shape"])
            for o in s.metadata["objects"]
        }
        # A code's characters: classes after the objects'; the global crop is unlabelled
        # there (it squeezes several characters into one patch).
        want |= {GLYPH_CLASS0 + CODE_CHARS.index(g["char"]) for g in s.metadata.get("glyphs", [])}
        if s.metadata["question_type"] == "code":
            assert (glob == -100).all()
            seen_code = True
        assert set(glob[glob > 0].tolist()) <= want
        assert set(lab[lab > 0].tolist()) == want
        start += n
    assert seen_code
    plain = [Sample(0, "how many circles ?", ["1"], image=samples[0].image)]
    assert collate(plain, tier="low").patch_labels is None


def test_patch_loss_trains_the_encoder_only_in_training() -> None:
    model = random_reference(seed=0).train()
    ds = ShapesVQA(4, seed=5)
    batch = collate([ds[i] for i in range(4)], tier="medium")
    with_patch = model.loss(batch, top_k=2, aux_loss_coef=0.0, patch_loss_coef=1.0)
    without = model.loss(batch, top_k=2, aux_loss_coef=0.0, patch_loss_coef=0.0)
    assert with_patch.item() > without.item() + 1.0  # ~log(16) of patch cross-entropy
    model.eval()
    assert model.loss(batch, top_k=2).item() == pytest.approx(without.item(), abs=1e-5)


def test_relevance_labels_mark_the_objects_the_question_names() -> None:
    from knoblab.data.shapes import COLORS, SHAPES
    from knoblab.models.reference.batch import GLYPH_CLASS0, question_mentions

    assert question_mentions("how many circles ?") == [(None, "circle")]
    assert question_mentions("is the red circle left of the blue square ?") == [
        ("red", "circle"),
        ("blue", "square"),
    ]
    ds = ShapesVQA(40, seed=3)
    samples = [ds[i] for i in range(40)]
    batch = collate(samples, tier="high")
    assert batch.relevance_labels is not None
    assert batch.relevance_labels.shape == (int(batch.valid.sum()),)
    tpc = CFG.tokens_per_crop
    crop0, tok0 = 0, 0
    seen_types = set()
    for s, n in zip(samples, batch.crop_counts, strict=True):
        lab = batch.patch_labels[crop0 * tpc : (crop0 + n) * tpc]
        lab = lab[batch.valid[crop0 * tpc : (crop0 + n) * tpc]]
        rel = batch.relevance_labels[tok0 : tok0 + len(lab)]
        named = question_mentions(s.question)
        for cls, r in zip(lab.tolist(), rel.tolist(), strict=True):
            if cls <= 0:
                assert r == (-100 if cls == -100 else 0)
                continue
            if cls >= GLYPH_CLASS0:  # a code's character: what "what is the code ?" names
                assert r == 1 and s.metadata["question_type"] == "code"
                continue
            c, sh = list(COLORS)[(cls - 1) // 3], SHAPES[(cls - 1) % 3]
            want = next(
                (j + 1 for j, (mc, ms) in enumerate(named[:2]) if ms == sh and mc in (None, c)), 0
            )
            assert r == want
        if (rel > 0).any():
            seen_types.add(s.metadata["question_type"])
        if s.metadata["question_type"] == "position":
            assert set(rel[rel > 0].tolist()) == {1, 2}  # both named objects are unique
        crop0, tok0 = crop0 + n, tok0 + len(lab)
    assert tok0 == len(batch.relevance_labels)
    assert {"count", "color", "position", "code"} <= seen_types


def test_relevance_loss_only_in_training_and_reaches_the_first_block() -> None:
    model = random_reference(seed=0).train()
    ds = ShapesVQA(6, seed=5)
    batch = collate([ds[i] for i in range(6)], tier="medium")
    kw = {"top_k": 2, "aux_loss_coef": 0.0, "patch_loss_coef": 0.0}
    with_rel = model.loss(batch, relevance_loss_coef=1.0, **kw)
    without = model.loss(batch, relevance_loss_coef=0.0, **kw)
    assert with_rel.item() > without.item() + 0.5  # ~log(3) of relevance cross-entropy
    with_rel.backward()
    assert model.relevance_head.weight.grad is not None
    assert model.lm.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    model.eval()
    assert model.loss(batch, relevance_loss_coef=1.0, **kw).item() == pytest.approx(
        without.item(), abs=1e-5
    )
