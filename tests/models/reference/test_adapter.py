"""ReferenceAdapter: the adapter protocol, knob effects on the records, one-line errors."""

from __future__ import annotations

import warnings

import pytest
from PIL import Image

from knoblab.data.sample import Sample
from knoblab.data.shapes import ShapesVQA
from knoblab.errors import CheckpointError, ConfigError, DataError, KnobLabError
from knoblab.models.adapter import Generation, ModelAdapter
from knoblab.models.reference.adapter import ReferenceAdapter, build
from knoblab.models.reference.config import ReferenceConfig
from knoblab.models.reference.weights import random_reference
from knoblab.models.registry import build_adapter

TPC = ReferenceConfig().tokens_per_crop
CROP = ReferenceConfig().crop_size


@pytest.fixture()
def adapter() -> ReferenceAdapter:
    return ReferenceAdapter(random_reference(seed=0))


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    ds = ShapesVQA(6, seed=11)
    return [ds[i] for i in range(6)]


def test_implements_the_protocol(adapter: ReferenceAdapter) -> None:
    assert isinstance(adapter, ModelAdapter)
    specs = adapter.knobs()
    assert set(specs) == {"tier", "vision_tokens", "top_k", "num_active_blocks"}
    assert specs["tier"].values == ("low", "medium", "high")
    assert specs["top_k"].values == (1, 2, 3, 4)
    assert specs["num_active_blocks"].values == (1, 2, 3, 4)
    assert all(v % TPC == 0 for v in specs["vision_tokens"].values)


def test_stages_run_and_record_counts(adapter: ReferenceAdapter, samples: list[Sample]) -> None:
    adapter.apply_knobs({"tier": "medium", "top_k": 2, "num_active_blocks": 4})
    p = adapter.preprocess(samples[0])
    assert 4 <= p.num_crops <= 8
    assert p.theoretical_vision_tokens == (p.num_crops + 1) * TPC
    assert p.actual_vision_tokens <= p.theoretical_vision_tokens
    assert (
        p.target_vision_tokens == p.theoretical_vision_tokens
    )  # tier mode: target = selected crops
    assert p.image_size == (p.tiling[0] * CROP, p.tiling[1] * CROP)
    assert p.input_text_tokens == len(samples[0].question.replace("?", " ?").split()) + 2
    vis = adapter.encode_vision(p)
    assert vis.shape[0] == p.actual_vision_tokens
    gen = adapter.decode(adapter.prefill(p, vis), 3)
    assert isinstance(gen, Generation) and 1 <= gen.output_tokens <= 3


def test_apply_knobs_returns_effective_settings(adapter: ReferenceAdapter) -> None:
    eff = adapter.apply_knobs({"tier": "high", "top_k": 1, "num_active_blocks": 2})
    assert eff["tier"] == "high"
    assert eff["tier_range"] == {"min_crops": 9, "max_crops": 15}
    assert eff["max_crops"] == 15
    assert eff["top_k"] == 1
    assert eff["num_active_blocks"] == 2 and eff["num_total_blocks"] == 4
    assert eff["active_block_indices"] == [0, 1]
    # Settings persist; a partial update changes only what it names.
    eff = adapter.apply_knobs({"top_k": 3})
    assert eff["tier"] == "high" and eff["num_active_blocks"] == 2 and eff["top_k"] == 3


def test_target_tokens_mode(adapter: ReferenceAdapter, samples: list[Sample]) -> None:
    eff = adapter.apply_knobs({"vision_tokens": 6 * TPC})
    assert eff["tier"] is None and eff["vision_tokens"] == 6 * TPC and eff["max_crops"] == 5
    p = adapter.preprocess(samples[1])
    assert p.target_vision_tokens == 6 * TPC
    assert p.num_crops <= 5 and p.extra["target_crops"] == 5
    eff = adapter.apply_knobs({"tier": "low"})  # switching back clears the target
    assert eff["vision_tokens"] is None
    assert adapter.preprocess(samples[1]).num_crops <= 3


def test_tier_changes_tokens(adapter: ReferenceAdapter, samples: list[Sample]) -> None:
    tokens = []
    for tier in ("low", "medium", "high"):
        adapter.apply_knobs({"tier": tier})
        tokens.append(adapter.preprocess(samples[2]).actual_vision_tokens)
    assert tokens[0] < tokens[1] < tokens[2]


@pytest.mark.parametrize(
    "settings, key, allowed",
    [
        ({"tier": "ultra"}, "knobs.tier", "low"),
        ({"top_k": 5}, "knobs.top_k", "[1, 2, 3, 4]"),
        ({"top_k": 0}, "knobs.top_k", "[1, 2, 3, 4]"),
        ({"num_active_blocks": 0}, "knobs.num_active_blocks", "[1, 2, 3, 4]"),
        ({"num_active_blocks": 9}, "knobs.num_active_blocks", "[1, 2, 3, 4]"),
        ({"vision_tokens": TPC + 1}, "knobs.vision_tokens", str(2 * TPC)),
        ({"tier": "low", "vision_tokens": 2 * TPC}, "knobs.vision_tokens", "exclusive"),
        ({"topk": 2}, "knobs.topk", "top_k"),
    ],
)
def test_bad_knobs_are_one_line_errors(
    adapter: ReferenceAdapter, settings: dict, key: str, allowed: str
) -> None:
    before = adapter.effective_settings()
    with pytest.raises(ConfigError) as e:
        adapter.apply_knobs(settings)
    assert e.value.key == key
    assert allowed in str(e.value) and "\n" not in str(e.value)
    assert adapter.effective_settings() == before  # nothing half-applied


def test_bad_images_and_questions(
    adapter: ReferenceAdapter, samples: list[Sample], tmp_path
) -> None:
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    cases = [
        Sample(0, "what?", ["x"], image=str(corrupt), image_id="bad"),
        Sample(1, "what?", ["x"], image=str(tmp_path / "missing.png")),
        Sample(2, "what?", ["x"], image=None),
        Sample(3, "what?", ["x"], image=12),
        Sample(4, "   ", ["x"], image=samples[0].image),
        Sample(5, "", ["x"], image=samples[0].image),
    ]
    for s in cases:
        with pytest.raises(DataError) as e:
            adapter.preprocess(s)
        assert "\n" not in str(e.value) and "allowed" in str(e.value)
    assert "bad.png" in str(pytest.raises(DataError, adapter.preprocess, cases[0]).value)


def test_image_path_is_opened(adapter: ReferenceAdapter, samples: list[Sample], tmp_path) -> None:
    path = tmp_path / "ok.png"
    samples[0].image.save(path)
    s = Sample(0, samples[0].question, samples[0].answers, image=str(path))
    a = adapter.preprocess(s)
    b = adapter.preprocess(samples[0])
    assert a.actual_vision_tokens == b.actual_vision_tokens
    assert (a.inputs["vision"].pixels == b.inputs["vision"].pixels).all()


def test_grayscale_image_is_converted(adapter: ReferenceAdapter) -> None:
    s = Sample(0, "how many circles are there?", ["0"], image=Image.new("L", (50, 80), 128))
    assert adapter.preprocess(s).inputs["vision"].pixels.shape[1] == 3


def test_build_from_registry_warns_without_weights(tmp_path, monkeypatch) -> None:
    import knoblab.models.reference.weights as weights_mod

    # As on a checkout whose package ships no weights (yet): random init, with a warning.
    monkeypatch.setattr(weights_mod, "shipped_weights_path", lambda: tmp_path / "none.safetensors")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = build_adapter(
            {"kind": "reference", "weights": None, "max_new_tokens": 3},
            {"device": "cpu", "num_threads": None},
        )
    assert any("random initialisation" in str(x.message) for x in w)
    assert a.max_new_tokens == 3 and a.dtype == "float32"


def test_build_errors(tmp_path) -> None:
    with pytest.raises(KnobLabError, match="model.weights="):
        build({"weights": str(tmp_path / "nope.safetensors")})
    with pytest.raises(ConfigError, match="model.dtype='int8'"):
        build({"dtype": "int8"})
    with pytest.raises(ConfigError, match="model.max_new_tokens=0"):
        build({"max_new_tokens": 0})


def test_save_and_load_round_trip(tmp_path, samples: list[Sample]) -> None:
    from knoblab.models.reference.weights import load_reference, save_reference

    m = random_reference(seed=4)
    path = save_reference(m, tmp_path / "w" / "ref.safetensors")
    assert path.exists() and path.with_suffix(".json").exists()
    a = ReferenceAdapter(m.eval())
    b = build({"weights": str(path)})
    assert isinstance(load_reference(path).cfg.tiers, dict)
    for s in samples[:2]:
        assert a.generate(s).token_ids == b.generate(s).token_ids


def test_saving_the_same_weights_gives_the_same_bytes(tmp_path) -> None:
    """The recipe's reproducibility check compares file hashes: nothing in the file may
    vary between two saves of the same tensors (safetensors' metadata order once did)."""
    import hashlib

    from knoblab.models.reference.weights import save_reference

    m = random_reference(seed=2)
    digests = {
        hashlib.sha256(save_reference(m, tmp_path / f"{i}.safetensors").read_bytes()).hexdigest()
        for i in range(6)
    }
    assert len(digests) == 1


#: reference-v1.json as the v1 recipe wrote it (before codes: no answer_steps, 68 words,
#: 16 patch classes): the old-format fixture of the loading migration.
V1_CONFIG = {
    "vocab_size": 68, "crop_size": 24, "patch_size": 8, "stem_channels": [32, 48],
    "vision_dim": 96, "vision_layers": 1, "vision_heads": 4, "d_model": 96, "n_heads": 4,
    "n_layers": 4, "num_experts": 4, "expert_hidden": 128, "top_k": 2, "max_seq_len": 192,
    "max_tiles": 15, "pos_frequencies": 6,
    "tiers": {"low": [1, 3], "medium": [4, 8], "high": [9, 15]}, "patch_classes": 16,
}  # fmt: skip


def test_reference_v1_weights_still_load_and_answer_codes(tmp_path) -> None:
    """Weights from before the codes (reference-v1) load from their path: no answer-step
    embeddings, the first 68 words (a code question's new words are <unk> to them)."""
    import json

    from knoblab.models.reference.weights import load_reference, save_reference

    cfg = ReferenceConfig.from_dict({**V1_CONFIG, "answer_steps": 0, "lm_vision_pos": False})
    path = save_reference(random_reference(cfg, seed=1), tmp_path / "reference-v1.safetensors")
    # as v1 wrote it: a bare architecture JSON, safetensors metadata {"format": ...}
    from safetensors.torch import load_file, save_file

    save_file(load_file(path), str(path), metadata={"format": "knoblab-reference"})
    path.with_suffix(".json").write_text(json.dumps(V1_CONFIG))
    model = load_reference(path)
    assert model.cfg.answer_steps == 0 and model.lm.step is None and model.vision_pos is None
    assert len(model.tokenizer) == 68
    ds = ShapesVQA(40, seed=0)
    code = next(ds[i] for i in range(40) if ds[i].metadata["question_type"] == "code")
    gen = ReferenceAdapter(model).generate(code)
    assert 1 <= gen.output_tokens <= 16
    assert all(0 <= t < 68 for t in gen.token_ids)
    # The evaluation path (collate + predict) tokenises with the model's 68 words too.
    from knoblab.models.reference.batch import collate

    batch = collate([code, ds[0]], tier="low", cfg=model.cfg)
    assert max(max(ids) for ids in batch.prompt_ids + batch.answer_ids) < 68
    assert len(model.predict(batch)) == 2

    # The training side (train.init_weights, knoblab upgrade-checkpoint) reads it too.
    from knoblab.training.checkpoint import load_model_from_checkpoint

    again = load_model_from_checkpoint(path, expected_kind="reference")
    assert again.cfg.answer_steps == 0 and not again.cfg.lm_vision_pos
    assert again.cfg.vocab_size == 68 and len(again.tokenizer) == 68

    # A v2 config over weights without the answer-step table: one line naming the tensor.
    path.with_suffix(".json").write_text(json.dumps({**V1_CONFIG, "answer_steps": 16}))
    with pytest.raises(CheckpointError, match=r"missing \['lm.step.weight', 'vision_pos"):
        load_reference(path)
