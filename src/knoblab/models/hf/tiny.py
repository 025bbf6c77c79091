"""Tiny random-weight checkpoints of each family, written to a local directory.

They let the adapters, the sweep runner and the docs' examples run offline in seconds:
a word-level tokenizer with the family's special tokens, a PIL image processor with
small patches, and a model with 2 decoder layers and hidden size 32. The weights are
random, so the answers are nonsense; everything else (shapes, knobs, stages, caches)
is the real code path.

Example:
    >>> path = write_tiny_checkpoint("qwen2_5_vl", tmp_path / "tiny-qwen")
    >>> adapter = knoblab.models.hf.build({"path": str(path), "dtype": "fp32"})
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from knoblab._compat.transformers import processor_without_video
from knoblab.errors import ConfigError
from knoblab.models.hf.base import processor_settings, transformers_class

#: Ordinary words of the tiny vocabulary (anything else is ``[UNK]``).
WORDS = (
    "what is the color of shape a an in image red blue green yellow circle square triangle "
    "how many are there ? yes no one two three user assistant"
).split()


def tiny_tokenizer(special: Sequence[str], eos: str, extra_words: int = 40) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` with ``special`` tokens (ids 1..len(special))."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", *special, *WORDS, *[f"w{i}" for i in range(extra_words)]]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        eos_token=eos,
        pad_token=special[0],
        additional_special_tokens=list(special),
    )


_QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _qwen(model_type: str) -> tuple[Any, Any]:
    tok = tiny_tokenizer(_QWEN_SPECIAL, eos="<|im_end|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_SPECIAL}
    patch = 14 if model_type == "qwen2_5_vl" else 16
    ip = transformers_class("Qwen2VLImageProcessorPil")(
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(2 * patch) ** 2,
        max_pixels=(2 * patch) ** 2 * 64,
    )
    proc_cls = "Qwen2_5_VLProcessor" if model_type == "qwen2_5_vl" else "Qwen3VLProcessor"
    processor = processor_without_video(transformers_class(proc_cls))(
        image_processor=ip, tokenizer=tok, video_processor=None
    )
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=None,
    )
    tokens = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    vision: dict[str, Any] = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=patch,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=32,
    )
    if model_type == "qwen2_5_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 1, 1],
        }
        vision.update(window_size=4 * patch, fullatt_block_indexes=[1])
        config = transformers_class("Qwen2_5_VLConfig")(
            text_config=text, vision_config=vision, **tokens
        )
        model_cls = "Qwen2_5_VLForConditionalGeneration"
    else:
        text.update(head_dim=8)
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 1, 1],
        }
        vision.update(num_position_embeddings=64, deepstack_visual_indexes=[0])
        if model_type == "qwen3_vl_moe":
            text.update(
                num_experts=4,
                num_experts_per_tok=2,
                moe_intermediate_size=16,
                decoder_sparse_step=1,
            )
            config = transformers_class("Qwen3VLMoeConfig")(
                text_config=text, vision_config=vision, **tokens
            )
            model_cls = "Qwen3VLMoeForConditionalGeneration"
        else:
            config = transformers_class("Qwen3VLConfig")(
                text_config=text, vision_config=vision, **tokens
            )
            model_cls = "Qwen3VLForConditionalGeneration"
    model = transformers_class(model_cls)(config)
    return model, processor


def _idefics3(model_type: str) -> tuple[Any, Any]:
    rows = [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]
    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>"]
    special += ["<image>", "<global-img>", *rows]
    tok = tiny_tokenizer(special, eos="<end_of_utterance>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    crop, patch = 32, 8  # 16 patches per crop, pixel-shuffled by 2x2 -> image_seq_len 4
    prefix = "SmolVLM" if model_type == "smolvlm" else "Idefics3"
    ip = transformers_class(f"{prefix}ImageProcessorPil")(
        size={"longest_edge": 4 * crop},
        max_image_size={"longest_edge": crop},
        do_image_splitting=True,
    )
    proc_cls = transformers_class(f"{prefix}Processor")
    if model_type == "smolvlm":
        processor = processor_without_video(proc_cls)(
            image_processor=ip, tokenizer=tok, video_processor=None, image_seq_len=4
        )
    else:
        processor = proc_cls(image_processor=ip, tokenizer=tok, image_seq_len=4)
    config = transformers_class(f"{prefix}Config")(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=crop,
            patch_size=patch,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            eos_token_id=ids["<end_of_utterance>"],
            pad_token_id=ids["<|endoftext|>"],
            bos_token_id=None,
        ),
        scale_factor=2,
        image_token_id=ids["<image>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    return transformers_class(f"{prefix}ForConditionalGeneration")(config), processor


def _llava_onevision() -> tuple[Any, Any]:
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tok = tiny_tokenizer(special, eos="<|im_end|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    side, patch = 16, 4  # 16 tokens per crop
    pinpoints = [[side * a, side * b] for a in (1, 2, 3) for b in (1, 2, 3)]
    ip = transformers_class("LlavaOnevisionImageProcessorPil")(
        size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
    )
    processor = processor_without_video(transformers_class("LlavaOnevisionProcessor"))(
        image_processor=ip,
        tokenizer=tok,
        video_processor=None,
        num_image_tokens=(side // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    config = transformers_class("LlavaOnevisionConfig")(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=side,
            patch_size=patch,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            bos_token_id=None,
        ),
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
    )
    return transformers_class("LlavaOnevisionForConditionalGeneration")(config), processor


def _deepseek_ocr2() -> tuple[Any, Any]:
    special = ["<|endoftext|>", "<|end|>", "<image>"]
    tok = tiny_tokenizer(special, eos="<|end|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    # The vision model's learned queries fix the geometry: 768-px views -> 12 x 12 = 144
    # tokens each. One windowed SAM layer keeps a view cheap (~0.1 s on a CPU core).
    ip = transformers_class("DeepseekOcr2ImageProcessorPil")(
        size={"height": 768, "width": 768}, tile_size=768
    )
    processor = transformers_class("DeepseekOcr2Processor")(image_processor=ip, tokenizer=tok)
    sam = dict(
        hidden_size=16,
        output_channels=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        image_size=768,
        patch_size=16,
        window_size=8,
        global_attn_indexes=[],
        downsample_channels=[16, 32],
    )
    encoder = dict(
        vocab_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        moe_intermediate_size=16,
        mlp_layer_types=["dense", "sparse"],  # as the release: first block dense
        eos_token_id=ids["<|end|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=None,
    )
    config = transformers_class("DeepseekOcr2Config")(
        vision_config=dict(sam_config=sam, encoder_config=encoder),
        text_config=text,
        image_token_id=ids["<image>"],
    )
    return transformers_class("DeepseekOcr2ForConditionalGeneration")(config), processor


def _gemma3() -> tuple[Any, Any]:
    # an unmapped family (the generic fallback): fixed 32-px views, 4 tokens per image
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<bos>", "<end_of_turn>", "<start_of_image>", "<end_of_image>"]
    special += ["<image_soft_token>"]
    base = tiny_tokenizer(special, eos="<end_of_turn>")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        unk_token="[UNK]",
        eos_token="<end_of_turn>",
        pad_token="<pad>",
        bos_token="<bos>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    ip = transformers_class("Gemma3ImageProcessorPil")(size={"height": 32, "width": 32})
    processor = transformers_class("Gemma3Processor")(
        image_processor=ip, tokenizer=tok, image_seq_length=4
    )
    config = transformers_class("Gemma3Config")(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=16,
            eos_token_id=ids["<end_of_turn>"],
            pad_token_id=ids["<pad>"],
            bos_token_id=ids["<bos>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        mm_tokens_per_image=4,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    return transformers_class("Gemma3ForConditionalGeneration")(config), processor


def _glm4v_moe() -> tuple[Any, Any]:
    # an unmapped MoE family (the generic fallback): a Qwen-style pixel budget, 4 experts
    special = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|begin_of_image|>"]
    special += ["<|end_of_image|>", "<|image|>", "<|video|>", "<|begin_of_video|>"]
    special += ["<|end_of_video|>"]
    tok = tiny_tokenizer(special, eos="<|user|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    patch = 14
    ip = transformers_class("Glm4vImageProcessorPil")(
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": (2 * patch) ** 2, "longest_edge": (2 * patch) ** 2 * 64},
    )
    processor = processor_without_video(transformers_class("Glm4vProcessor"))(
        image_processor=ip, tokenizer=tok, video_processor=None
    )
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 16, half rotary: 8 = 2 * sum(mrope_section)
        num_key_value_heads=1,
        moe_intermediate_size=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        eos_token_id=ids["<|user|>"],
        pad_token_id=ids["<|endoftext|>"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=patch,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=32,
        image_size=56,
    )
    config = transformers_class("Glm4vMoeConfig")(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
    )
    return transformers_class("Glm4vMoeForConditionalGeneration")(config), processor


BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "qwen2_5_vl": lambda: _qwen("qwen2_5_vl"),
    "qwen3_vl": lambda: _qwen("qwen3_vl"),
    "qwen3_vl_moe": lambda: _qwen("qwen3_vl_moe"),
    "smolvlm": lambda: _idefics3("smolvlm"),
    "idefics3": lambda: _idefics3("idefics3"),
    "llava_onevision": _llava_onevision,
    "deepseek_ocr2": _deepseek_ocr2,
    # unmapped families: they run on the generic fallback (knoblab.models.hf.generic)
    "gemma3": _gemma3,
    "glm4v_moe": _glm4v_moe,
}


def tiny_model(family: str, seed: int = 0) -> tuple[Any, Any]:
    """A tiny random ``(model, processor)`` of ``family``, in memory."""
    if family not in BUILDERS:
        raise ConfigError("family", family, f"one of {', '.join(BUILDERS)}")
    torch.manual_seed(seed)
    model, processor = BUILDERS[family]()
    return model.eval(), processor


def write_tiny_checkpoint(family: str, path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random checkpoint of ``family`` (model + processor) under ``path``."""
    path = Path(path)
    model, processor = tiny_model(family, seed)
    model.save_pretrained(path)
    # the processor's own save_pretrained needs a video processor (torchvision); its parts
    # are all that load_processor needs
    processor.tokenizer.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    settings = {"processor_class": type(processor).__name__, **processor_settings(processor)}
    (path / "processor_config.json").write_text(json.dumps(settings, indent=2))
    return path
