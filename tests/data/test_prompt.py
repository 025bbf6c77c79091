"""dataset.prompt: defaults per metric/model, one-line errors, the real runner's records and identity."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from knoblab.config import plain
from knoblab.data.prompt import SHORT_ANSWER, Prompt, resolve_prompt
from knoblab.data.registry import build_dataset
from knoblab.errors import ConfigError, KnobLabError
from knoblab.hydra_utils import compose
from knoblab.models.registry import build_adapter
from knoblab.profiling import records as rec
from knoblab.profiling.runner import run_sweep

# cfg, metric, instruction_tuned, format -> (pre, post)
CASES = [
    (None, "vqa", True, "jsonl", ("", SHORT_ANSWER)),  # lmms-eval's default for a chat model
    (None, "exact_match", True, "coco_vqa", ("", SHORT_ANSWER)),
    (None, "anls", True, "hf", ("", SHORT_ANSWER)),  # lmms-eval's DocVQA prompt
    (None, "relaxed_accuracy", True, "hf", ("", "")),  # ChartQA: another instruction there
    (None, "vqa", False, "jsonl", ("", "")),  # the reference model: never a default prompt
    (None, "vqa", True, "shapes", ("", "")),  # shapes-vqa: no default prompt for any model
    (None, "edit_distance", True, "omnidocbench", ("", "")),  # OCR: the question says it all
    ({"post": ""}, "vqa", True, "jsonl", ("", "")),  # set empty: no instruction
    ({"pre": "Q: ", "post": " A:"}, "vqa", False, "shapes", ("Q: ", " A:")),  # set: always
    ({"pre": "Look. "}, "vqa", True, "jsonl", ("Look. ", SHORT_ANSWER)),
]


@pytest.mark.parametrize(("cfg", "metric", "chat", "fmt", "want"), CASES)
def test_prompt_in_effect(cfg, metric, chat, fmt, want):
    p = resolve_prompt(cfg, metric=metric, instruction_tuned=chat, fmt=fmt)
    assert (p.pre, p.post) == want
    assert p.apply("what ?") == want[0] + "what ?" + want[1]


def test_bad_prompt_is_a_one_line_error():
    with pytest.raises(
        ConfigError, match=r"dataset.prompt='be brief' is invalid: allowed is a mapping"
    ):
        build_dataset({"format": "shapes", "size": 2, "prompt": "be brief"})
    with pytest.raises(ConfigError, match="did you mean dataset.prompt.post"):
        resolve_prompt({"pots": "x"}, metric="vqa", instruction_tuned=True)


def _profile(tmp_path, overrides, out="out"):
    cfg = compose(
        "profile",
        [
            "dataset=shapes_vqa",
            "dataset.size=4",
            "dataset.sampling.num_samples_per_epoch=2",
            "knobs.tier=[low]",
            "knobs.top_k=[2]",
            "knobs.num_active_blocks=[4]",
            "run.warmup_runs=0",
            "run.num_runs_per_sample=1",
            "run.progress=false",
            f"run.output_dir={tmp_path / out}",
            *overrides,
        ],
    )
    adapter = build_adapter(plain(cfg.model), plain(cfg.hardware))
    return run_sweep(cfg, adapter=adapter, model_config=plain(cfg.model))


def _only_record(res):
    (record,) = rec.load_records(res.out_dir).values()
    return record


def test_reference_model_on_shapes_gets_no_prompt_and_a_set_one_is_recorded(tmp_path):
    plain_run = _only_record(_profile(tmp_path, []))
    assert plain_run["environment"]["prompt"] == {"pre": "", "post": ""}
    questions = [s["metadata"]["question"] for s in plain_run["per_sample_results"]]
    sweep = json.loads((tmp_path / "out" / "shapes-vqa" / "sweep.json").read_text())
    assert "prompt" not in sweep["identity"]["dataset"]  # old sweep dirs stay resumable

    prompted = _only_record(_profile(tmp_path, ["dataset.prompt.pre='look: '"], out="p"))
    assert prompted["environment"]["prompt"] == {"pre": "look: ", "post": ""}
    asked = [s["metadata"]["question"] for s in prompted["per_sample_results"]]
    assert asked == ["look: " + q for q in questions]
    sweep = json.loads((tmp_path / "p" / "shapes-vqa" / "sweep.json").read_text())
    assert sweep["identity"]["dataset"]["prompt"] == {"pre": "look: ", "post": ""}
    with pytest.raises(KnobLabError, match="dataset differs"):  # another prompt: another sweep
        _profile(tmp_path, [], out="p")


def test_chat_model_gets_the_short_answer_instruction_inside_its_template(tmp_path):
    from knoblab.models.hf.tiny import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint("qwen2_5_vl", tmp_path / "ckpt")
    (ckpt / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% for c in m.content %}{% if c.type == 'image' %}<|vision_start|><|image_pad|>"
        "<|vision_end|>{% else %}{{ c.text }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    (tmp_path / "data").mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "data" / "0.png")
    row = {"sample_id": 0, "image": "0.png", "question": "what color ?", "answers": ["red"]}
    (tmp_path / "data" / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    data = {"format": "jsonl", "path": str(tmp_path / "data" / "manifest.jsonl"), "name": "tiny"}
    adapter = build_adapter({"kind": "hf", "path": str(ckpt), "dtype": "fp32"})
    assert adapter.instruction_tuned
    cfg = {
        "dataset": {**data, "sampling": {"num_samples_per_epoch": 1, "seed": 0}},
        "knobs": {"num_active_blocks": [1]},
        "run": {"output_dir": str(tmp_path / "out"), "warmup_runs": 0, "progress": False},
    }
    record = _only_record(run_sweep(cfg, adapter=adapter, dataset=build_dataset(data)))
    assert record["environment"]["prompt"] == Prompt("", SHORT_ANSWER).as_dict()
    (sample,) = record["per_sample_results"]
    assert sample["metadata"]["question"] == "what color ?" + SHORT_ANSWER
    assert (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>what color ?\n"
        "Answer the question using a single word or phrase.<|im_end|>\n<|im_start|>assistant\n"
    ) in sample["prompt"]
