"""``ReferenceAdapter``: the reference VLM behind ``knoblab.models.adapter.ModelAdapter``.

Knobs (``knobs()``):

* ``tier`` — ``low`` / ``medium`` / ``high``: each image gets the crop count within the
  tier's range that distorts its aspect ratio least (seed 002);
* ``vision_tokens`` — target tokens instead of a tier: ``num_crops = target //
  tokens_per_crop - 1`` (multiples of ``tokens_per_crop``);
* ``top_k`` — experts per token, 1..num_experts;
* ``num_active_blocks`` — 1..n_layers; the first n blocks run.

``tier`` and ``vision_tokens`` are two modes of one knob: setting one clears the other
(setting both in one call is an error).

Example:
    >>> from knoblab.data.shapes import ShapesVQA
    >>> sample = ShapesVQA(4)[0]
    >>> adapter = build({"kind": "reference"})
    >>> adapter.apply_knobs({"tier": "high", "top_k": 2, "num_active_blocks": 4})
    {'tier': 'high', 'tier_range': {'min_crops': 9, 'max_crops': 15}, 'max_crops': 15, ...}
    >>> prepared = adapter.preprocess(sample)
    >>> vis = adapter.encode_vision(prepared)
    >>> gen = adapter.decode(adapter.prefill(prepared, vis), max_new_tokens=16)

Batched (``knoblab.models.adapter.BatchedAdapter``): ``collate`` stacks every crop of
the batch, ``encode_vision_batch`` runs them through the encoder in one call (its
attention stays within a crop), ``prefill_batch`` left-pads the sequences and
``decode_step_batch`` steps every unfinished sample, dropping finished ones from the
batch. Each sample's tokens equal its batch-1 tokens (tests/models/reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from knoblab.dtypes import canonical_dtype, torch_dtype
from knoblab.errors import ConfigError, DataError
from knoblab.models.adapter import BatchState, Generation, KnobSpec, Prepared, check_knob
from knoblab.models.reference.model import BatchDecode, DecodeState, ReferenceVLM
from knoblab.models.reference.preprocess import plan_image, prepare_image


class ReferenceAdapter:
    """Runs ``ReferenceVLM`` stage by stage for the profiler."""

    def __init__(
        self,
        model: ReferenceVLM,
        *,
        name: str = "reference-vlm",
        device: str = "cpu",
        dtype: str = "float32",
        max_new_tokens: int = 16,
    ):
        self.model = model.eval()
        self.cfg = model.cfg
        self.tokenizer = model.tokenizer
        self.name, self.device, self.dtype = name, device, dtype
        self.max_new_tokens = max_new_tokens
        self.tier: str | None = "high"
        self.vision_tokens: int | None = None

    # -- knobs -------------------------------------------------------------------------
    def knobs(self) -> dict[str, KnobSpec]:
        c = self.cfg
        tpc = c.tokens_per_crop
        return {
            "tier": KnobSpec(
                "tier", tuple(c.tiers), "high", "crop-count range per image (1 global crop + tiles)"
            ),
            "vision_tokens": KnobSpec(
                "vision_tokens",
                tuple(range(2 * tpc, (c.max_tiles + 1) * tpc + 1, tpc)),
                None,
                f"target vision tokens; num_crops = target // {tpc} - 1",
            ),
            "top_k": KnobSpec(
                "top_k", tuple(range(1, c.num_experts + 1)), c.top_k, "MoE experts per token"
            ),
            "num_active_blocks": KnobSpec(
                "num_active_blocks",
                tuple(range(1, c.n_layers + 1)),
                c.n_layers,
                "decoder blocks run (the first n)",
            ),
        }

    def apply_knobs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        specs = self.knobs()
        given = {k: v for k, v in settings.items() if v is not None}
        for k, v in given.items():
            check_knob(specs, k, v, self.name)
        if "tier" in given and "vision_tokens" in given:
            raise ConfigError(
                "knobs.vision_tokens",
                given["vision_tokens"],
                "null when knobs.tier is set (tier and vision_tokens are exclusive)",
            )
        if "tier" in given:
            self.tier, self.vision_tokens = given["tier"], None
        elif "vision_tokens" in given:
            self.tier, self.vision_tokens = None, given["vision_tokens"]
        self.model.set_knobs(
            top_k=given.get("top_k"), num_active_blocks=given.get("num_active_blocks")
        )
        return self.effective_settings()

    def effective_settings(self) -> dict[str, Any]:
        """The knob values in effect, in the form the records keep."""
        out: dict[str, Any] = {"tier": self.tier}
        if self.tier is not None:
            lo, hi = self.cfg.tiers[self.tier]
            out["tier_range"] = {"min_crops": lo, "max_crops": hi}
            out["max_crops"] = hi
            out["vision_tokens"] = None
        else:
            assert self.vision_tokens is not None
            out["tier_range"] = None
            out["max_crops"] = self.vision_tokens // self.cfg.tokens_per_crop - 1
            out["vision_tokens"] = self.vision_tokens
        out["tokens_per_crop"] = self.cfg.tokens_per_crop
        out["top_k"] = self.model.top_k
        out["num_experts"] = self.cfg.num_experts
        out["num_active_blocks"] = len(self.model.active_block_indices)
        out["num_total_blocks"] = self.model.num_total_blocks
        out["active_block_indices"] = list(self.model.active_block_indices)
        return out

    # -- memory ------------------------------------------------------------------------
    def kv_cache_bytes(self, tokens: int) -> int:
        """KV-cache bytes of a sequence of ``tokens`` at the current knobs (active blocks only)."""
        from knoblab.models.kv import kv_bytes_per_token

        c = self.cfg
        return kv_bytes_per_token(
            len(self.model.active_block_indices),
            c.n_heads,
            c.d_model // c.n_heads,
            self.model.lm.embed.weight.element_size(),
        ) * int(tokens)

    def weights_bytes(self) -> int:
        """Bytes of every parameter and buffer (the training-only heads included: loaded)."""
        from knoblab.models.kv import module_bytes

        return module_bytes(self.model)

    # -- stages ------------------------------------------------------------------------
    def _open_image(self, sample: Any) -> Image.Image:
        img = sample.image
        where = f"sample {getattr(sample, 'sample_id', '?')} (image_id={getattr(sample, 'image_id', '')!r})"
        if img is None:
            raise DataError(
                f"image=None in {where}: allowed is a PIL image or a path to an image file"
            )
        if isinstance(img, (str, Path)):
            try:
                with Image.open(img) as f:
                    f.load()
                    img = f.convert("RGB")
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise DataError(
                    f"image={str(img)!r} in {where} cannot be read: allowed is a readable image file ({exc})"
                ) from None
        elif not isinstance(img, Image.Image):
            raise DataError(
                f"image of type {type(img).__name__} in {where}: allowed is a PIL image or a path"
            )
        if img.width < 1 or img.height < 1:
            raise DataError(f"image size {img.size} in {where}: allowed is at least 1x1 pixels")
        return img

    def preprocess(self, sample: Any) -> Prepared:
        question = getattr(sample, "question", "")
        if not isinstance(question, str) or not question.strip():
            raise DataError(
                f"question={question!r} in sample {getattr(sample, 'sample_id', '?')}: allowed is a non-empty string"
            )
        img = self._open_image(sample)
        c = self.cfg
        plan = plan_image(img, c, tier=self.tier, vision_tokens=self.vision_tokens)
        vi = prepare_image(img, plan, c)
        prompt = self.tokenizer.encode(question) + [self.tokenizer.sep_id]
        target = plan.target_tokens if plan.target_tokens is not None else plan.theoretical_tokens
        return Prepared(
            inputs={"vision": vi, "prompt_ids": prompt},
            input_text_tokens=len(prompt) + 1,  # + <bos>
            actual_vision_tokens=vi.num_valid,
            theoretical_vision_tokens=plan.theoretical_tokens,
            target_vision_tokens=target,
            num_crops=plan.num_crops,
            tiling=plan.tiling,
            image_size=plan.image_size,
            extra={
                "target_crops": plan.target_crops
                if self.vision_tokens is not None
                else plan.num_crops,
                "actual_num_crops": plan.num_crops,
                "actual_tiling": list(plan.tiling),
                "actual_image_size": list(plan.content_size),
                "original_image_size": [img.height, img.width],
                "tier": plan.tier,
                "tier_range": list(plan.tier_range) if plan.tier_range else None,
            },
        )

    @torch.inference_mode()
    def encode_vision(self, prepared: Prepared) -> torch.Tensor:
        return self.model.encode_vision(prepared.inputs["vision"])

    @torch.inference_mode()
    def prefill(self, prepared: Prepared, vision: torch.Tensor) -> DecodeState:
        return self.model.prefill(vision, prepared.inputs["prompt_ids"])

    @torch.inference_mode()
    def decode(self, state: DecodeState, max_new_tokens: int | None = None) -> Generation:
        n = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        ids = self.model.greedy_decode(state, max(1, n))
        return Generation(token_ids=ids, text=self.tokenizer.decode(ids))

    # -- batched stages (knoblab.models.adapter.BatchedAdapter) ----------------------------
    def collate(self, prepared: Sequence[Prepared]) -> dict[str, Any]:
        """Every crop of the batch in one tensor (global crop first per sample), prompts listed."""
        dev = self.model.lm.embed.weight.device
        vis = [p.inputs["vision"] for p in prepared]
        counts = [int(v.pixels.shape[0]) for v in vis]
        is_tile = torch.ones(sum(counts), dtype=torch.long)
        is_tile[torch.tensor([0, *counts[:-1]]).cumsum(0)] = 0
        valid = torch.cat([v.patch_index >= 0 for v in vis])
        return {
            "pixels": torch.cat([v.pixels for v in vis]).to(dev),
            "positions": torch.cat([v.positions for v in vis]).to(dev),
            "is_tile": is_tile.to(dev),
            "valid": valid.to(dev),
            "valid_per_sample": [int((v.patch_index >= 0).sum()) for v in vis],
            "prompt_ids": [p.inputs["prompt_ids"] for p in prepared],
        }

    @torch.inference_mode()
    def encode_vision_batch(self, batch: Mapping[str, Any]) -> list[torch.Tensor]:
        feats = self.model._vision_features(
            batch["pixels"], batch["positions"], batch["is_tile"], batch["valid"]
        )
        return list(feats.split(batch["valid_per_sample"]))

    @torch.inference_mode()
    def prefill_batch(
        self, batch: Mapping[str, Any], vision: Sequence[torch.Tensor], max_new_tokens: int
    ) -> BatchState:
        inner = self.model.prefill_batch(vision, batch["prompt_ids"])
        state = BatchState.start(len(inner.rows), max_new_tokens, inner)
        self._push(state, inner)
        return state

    @torch.inference_mode()
    def decode_step_batch(self, state: BatchState) -> None:
        inner: BatchDecode = state.inner
        alive = [j for j, i in enumerate(inner.rows) if not state.finished[i]]
        if not alive:
            return
        if len(alive) < len(inner.rows):  # finished samples leave the batch
            inner = self.model.select_rows(inner, alive)
        inner = self.model.decode_step_batch([state.token_ids[i][-1] for i in inner.rows], inner)
        state.inner = inner
        self._push(state, inner)

    def _push(self, state: BatchState, inner: BatchDecode) -> None:
        """Each row's greedy token; stops as ``greedy_decode`` does (EOS, cap, max_seq_len)."""
        eos, limit = self.tokenizer.eos_id, self.cfg.max_seq_len
        tokens = inner.logits.argmax(-1).tolist()  # the step's one device-to-host read
        for i, tok, pos in zip(inner.rows, tokens, inner.positions, strict=True):
            state.push(i, tok, tok == eos or pos >= limit)

    def finish_batch(self, state: BatchState) -> list[Generation]:
        state.inner = None  # the cache is no longer needed
        return [
            Generation(token_ids=list(t), text=self.tokenizer.decode(t)) for t in state.token_ids
        ]

    def generate(self, sample: Any, max_new_tokens: int | None = None) -> Generation:
        """All stages for one sample (convenience; the profiler times them one by one)."""
        p = self.preprocess(sample)
        return self.decode(self.prefill(p, self.encode_vision(p)), max_new_tokens)


_BUILD_KEYS = {"kind", "name", "weights", "device", "dtype", "max_new_tokens", "num_threads"}


def build(cfg: Mapping[str, Any]) -> ReferenceAdapter:
    """A ``ReferenceAdapter`` from a ``model`` config section (kind ``reference``).

    Keys: ``weights`` (null = the shipped weights), ``device``, ``dtype`` (float32,
    bfloat16, float16, or the aliases of :mod:`knoblab.dtypes`), ``max_new_tokens``, ``num_threads`` (null = torch's default),
    ``name``. Other keys (hardware settings merged in by the registry) are ignored.
    """
    from knoblab.models.reference.weights import load_reference

    dtype = canonical_dtype(cfg.get("dtype") or "float32", "model.dtype")
    device = str(cfg.get("device") or "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("model.device", device, "cpu (no CUDA device is available here)")
    max_new = cfg.get("max_new_tokens", 16)
    if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
        raise ConfigError("model.max_new_tokens", max_new, "an integer >= 1")
    threads = cfg.get("num_threads")
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError("model.num_threads", threads, "an integer >= 1 or null")
        torch.set_num_threads(threads)
    model = load_reference(cfg.get("weights"), device=device, dtype=torch_dtype(dtype))
    return ReferenceAdapter(
        model,
        name=str(cfg.get("name") or "reference-vlm"),
        device=device,
        dtype=dtype,
        max_new_tokens=max_new,
    )
