"""The Hugging Face adapter shared by every family: knobs, split generation loop, loading.

A *family* (``qwen_vl.py``, ``smolvlm.py``, ...) only says what differs: which model and
processor classes to use, how its vision-token knob maps onto processor settings, and a
prompt for checkpoints without a chat template. Everything else lives here:

- ``num_active_blocks``: the decoder's ``layers`` ModuleList is swapped for its first
  ``n`` layers (the records' ``active_block_indices`` are ``0..n-1``); the full list is
  put back by :meth:`HFAdapter.restore` or the next ``apply_knobs``.
- ``top_k``: every MoE router of the decoder (a module with an integer ``top_k``) gets
  the new experts-per-token; the checkpoint's value is restored the same way. Families
  without MoE blocks do not list the knob, so asking for it is a ``ConfigError``.
- stages: ``encode_vision`` runs the vision tower + projector exactly as
  ``model.generate`` does before its prefill (``mm_encoder_outputs``), ``prefill`` is
  the first forward over the prompt with those features (it yields token 1), ``decode``
  is each further forward with the KV cache. The loop mirrors ``generate``'s greedy
  path call for call, so its tokens equal ``model.generate(do_sample=False)``'s.

NOTE: decoding is always greedy and ignores the checkpoint's ``generation_config``
sampling settings (temperature, top-p, repetition penalty): the sweep measures the
model, not a sampler. :meth:`HFAdapter.reference_generate` runs ``model.generate`` with
the same greedy settings, for checks.

NOTE: the loop calls the ``GenerationMixin`` helpers that ``generate`` itself uses; they
are private in transformers, so they are reached through ``knoblab._compat.transformers``
and the tests compare the loop with ``generate`` for every family on the installed version.

Usage (with a real checkpoint and a dataset ``Sample``)::

    adapter = knoblab.models.hf.build({"path": "/ckpt/Qwen2.5-VL-3B", "dtype": "bf16"})
    adapter.apply_knobs({"vision_tokens": 256, "num_active_blocks": 24})
    prepared = adapter.preprocess(sample)
    gen = adapter.decode(adapter.prefill(prepared, adapter.encode_vision(prepared)), 16)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from knoblab._compat.transformers import (
    decode_context,
    encode_multimodal,
    generation_position_ids,
    supports_mm_encoder_outputs,
    update_generation_kwargs,
)
from knoblab.dtypes import dtype_name
from knoblab.errors import ConfigError, DataError
from knoblab.models.adapter import BatchState, Generation, KnobSpec, Prepared, check_knob


class VisionKnob(Protocol):
    """How one family turns ``vision_tokens`` (max vision tokens per image) into settings."""

    def spec(self, processor: Any, model: nn.Module, values: Sequence[int] | None) -> KnobSpec:
        """The knob with its allowed values (``values`` overrides the family's ladder)."""
        ...

    def snapshot(self, processor: Any, model: nn.Module) -> Any:
        """The settings ``apply`` changes, to restore later."""
        ...

    def apply(self, processor: Any, model: nn.Module, value: int) -> dict[str, Any]:
        """Set the processor (and model config) for ``value``; returns what to record."""
        ...

    def restore(self, processor: Any, model: nn.Module, saved: Any) -> None:
        """Put back what ``snapshot`` saved."""
        ...


@dataclass(frozen=True)
class Family:
    """What a model family adds to the shared adapter.

    Attributes:
        name: the ``model.family`` config value (``qwen2_5_vl``).
        model_types: ``config.model_type`` values that select this family automatically.
        model_class: the ``transformers`` class name of the generation model.
        processor_class: the ``transformers`` processor class name.
        image_processor_class: the PIL-backend image processor (used when ``AutoProcessor``
            cannot be built, e.g. without torchvision).
        fallback_prompt: the prompt for a checkpoint without a chat template.
        vision: the ``vision_tokens`` knob, or None when the family has none.
        tokens_per_image: actual vision tokens of one prepared sample.
        layout: the processed image's ``num_crops``, ``tiling`` (rows, cols) and
            ``image_size`` (width, height) for the records; any may be missing.
    """

    name: str
    model_types: tuple[str, ...]
    model_class: str
    processor_class: str
    image_processor_class: str
    fallback_prompt: Callable[[str], str]
    vision: VisionKnob | None
    tokens_per_image: Callable[[Any, Mapping[str, Any]], int]
    layout: Callable[[Any, Mapping[str, Any], Any], dict[str, Any]] = lambda adapter, enc, image: {}


def transformers_class(name: str) -> Any:
    """A class of the installed transformers by name (``Qwen2_5_VLProcessor``)."""
    import transformers

    return getattr(transformers, name)


#: Processor ``__init__`` arguments that are parts, not settings.
_PROCESSOR_PARTS = {
    "self",
    "image_processor",
    "tokenizer",
    "video_processor",
    "chat_template",
    "kwargs",
    "args",
}


def processor_settings(processor: Any) -> dict[str, Any]:
    """The processor's own ``__init__`` settings (e.g. SmolVLM's ``image_seq_len``)."""
    params = inspect.signature(type(processor).__init__).parameters
    return {
        k: getattr(processor, k)
        for k in params
        if k not in _PROCESSOR_PARTS and hasattr(processor, k)
    }


def decoder_layers(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """The module holding the language decoder's ``layers`` ModuleList, and that list."""
    lm = model.get_decoder() if hasattr(model, "get_decoder") else model
    for owner in (lm, getattr(lm, "model", None)):
        layers = getattr(owner, "layers", None) if owner is not None else None
        if isinstance(layers, nn.ModuleList):
            return owner, layers
    raise ConfigError(
        "model.path", type(model).__name__, "a model whose decoder has a `layers` ModuleList"
    )


def moe_routers(layers: nn.ModuleList) -> list[nn.Module]:
    """Every MoE router under ``layers``: a module with an integer ``top_k`` attribute."""
    return [m for m in layers.modules() if isinstance(getattr(m, "top_k", None), int)]


@dataclass
class HFDecodeState:
    """What ``prefill`` hands to ``decode``: the sequence so far and the model kwargs."""

    input_ids: torch.Tensor
    model_kwargs: dict[str, Any]
    token_ids: list[int]
    finished: bool
    prompt_len: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class HFAdapter:
    """A ``transformers`` VLM behind knoblab's adapter protocol (see the module docstring).

    Args:
        model: the generation model (``...ForConditionalGeneration``), in eval mode.
        processor: its processor (tokenizer + image processor).
        family: the family description.
        name: the model name used in records.
        max_new_tokens: the default cap of :meth:`decode`.
        knob_values: per-knob allowed values overriding the family's defaults.
    """

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        family: Family,
        *,
        name: str = "",
        max_new_tokens: int = 16,
        knob_values: Mapping[str, Sequence[Any]] | None = None,
    ):
        self.model = model.eval()
        self.processor = processor
        self.family = family
        self.name = name or family.name
        self.max_new_tokens = max_new_tokens
        param = next(model.parameters())
        self.device = str(param.device)
        self.dtype = dtype_name(param.dtype)
        self._owner, self._all_layers = decoder_layers(model)
        self._routers = moe_routers(self._all_layers)
        self._router_top_k = [r.top_k for r in self._routers]
        self._vision_saved = family.vision.snapshot(processor, model) if family.vision else None
        self._knobs = self._build_specs(dict(knob_values or {}))
        self._effective: dict[str, Any] = {}
        #: knobs the generic fallback could not map -> why (empty for mapped families)
        self.unmapped: dict[str, str] = {}
        #: a chat model: ``dataset.prompt``'s default instruction applies (knoblab.data.prompt)
        self.instruction_tuned = bool(getattr(processor, "chat_template", None))

    # ----------------------------------------------------------------- knobs
    def _build_specs(self, overrides: dict[str, Sequence[Any]]) -> dict[str, KnobSpec]:
        n = len(self._all_layers)
        n_experts = 0
        specs: dict[str, KnobSpec] = {}
        if self.family.vision is not None:
            spec = self.family.vision.spec(
                self.processor, self.model, overrides.pop("vision_tokens", None)
            )
            specs[spec.name] = spec
        blocks = tuple(overrides.pop("num_active_blocks", range(1, n + 1)))
        specs["num_active_blocks"] = KnobSpec(
            "num_active_blocks",
            blocks,
            n,
            "run only the first n decoder layers (the rest are skipped)",
        )
        if self._routers:
            n_experts = _num_experts(self.model, self._routers[0])
            specs["top_k"] = KnobSpec(
                "top_k",
                tuple(overrides.pop("top_k", range(1, n_experts + 1))),
                self._router_top_k[0],
                "experts per token of every MoE block",
            )
        for name, top in (("num_active_blocks", n), ("top_k", specs.get("top_k") and n_experts)):
            bad = [v for v in (specs[name].values if name in specs else ()) if not 1 <= v <= top]
            if bad:
                raise ConfigError(f"model.knob_values.{name}", bad[0], f"an integer in 1..{top}")
        if overrides:
            key = next(iter(overrides))
            raise ConfigError(
                f"model.knob_values.{key}",
                overrides[key],
                f"a knob of {self.name!r}: {', '.join(specs)}",
            )
        for spec in specs.values():
            if spec.default not in spec.values:  # the checkpoint's own setting is always allowed
                vals = tuple(sorted({*spec.values, spec.default}))
                specs[spec.name] = KnobSpec(spec.name, vals, spec.default, spec.doc)
        return specs

    def knobs(self) -> Mapping[str, KnobSpec]:
        """The knobs of this model; ``top_k`` only for MoE models."""
        return dict(self._knobs)

    def apply_knobs(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Set knobs in place; unset knobs go back to the checkpoint's defaults."""
        for key, value in settings.items():
            check_knob(self._knobs, key, value, self.name)
        self.restore()
        eff: dict[str, Any] = {}
        vis = self.family.vision
        if vis is not None:
            name = "vision_tokens"
            value = settings.get(name, self._knobs[name].default)
            eff[name] = value
            eff.update(vis.apply(self.processor, self.model, value))
        n_total = len(self._all_layers)
        n = int(settings.get("num_active_blocks", n_total))
        if n < n_total:
            self._owner.layers = nn.ModuleList(list(self._all_layers)[:n])
        eff.update(
            num_active_blocks=n, num_total_blocks=n_total, active_block_indices=list(range(n))
        )
        if self._routers:
            k = int(settings.get("top_k", self._knobs["top_k"].default))
            for r in self._routers:
                r.top_k = k
            eff["top_k"] = k
        self._effective = eff
        return dict(eff)

    def restore(self) -> None:
        """Put the checkpoint's layers, router top-k and vision settings back."""
        self._owner.layers = self._all_layers
        for r, k in zip(self._routers, self._router_top_k, strict=True):
            r.top_k = k
        if self.family.vision is not None:
            self.family.vision.restore(self.processor, self.model, self._vision_saved)
        self._effective = {}

    # ---------------------------------------------------------------- memory
    def kv_cache_bytes(self, tokens: int) -> int:
        """KV-cache bytes of a sequence of ``tokens`` at the current knobs
        (``knoblab.models.kv.hf_kv_cache_bytes``): the active decoder layers of the text
        config, in the model's dtype, sliding-window layers holding their window."""
        from knoblab.models.kv import hf_kv_cache_bytes

        _, layers = decoder_layers(self.model)
        size = next(self.model.parameters()).element_size()
        return hf_kv_cache_bytes(self.model.config.get_text_config(), len(layers), size, tokens)

    def weights_bytes(self) -> int:
        """Bytes of every parameter and buffer, the layers ``num_active_blocks`` skips included."""
        from knoblab.models.kv import module_bytes

        return module_bytes(self.model, self._all_layers)

    # ---------------------------------------------------------------- stages
    def prompt(self, question: str) -> str:
        """The prompt text for one image and ``question`` (chat template when there is one)."""
        template = getattr(self.processor, "chat_template", None)
        if template:
            messages = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
            ]
            return self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        return self.family.fallback_prompt(question)

    def preprocess(self, sample: Any) -> Prepared:
        """Image + question -> processor outputs on the model's device (not timed)."""
        image = _open_image(sample.image, sample)
        text = self.prompt(sample.question)
        enc = self.processor(images=[image], text=[text], return_tensors="pt")
        enc = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in enc.items()}
        if "pixel_values" in enc and enc["pixel_values"].is_floating_point():
            enc["pixel_values"] = enc["pixel_values"].to(next(self.model.parameters()).dtype)
        ids = enc["input_ids"]
        vision_tokens = self.family.tokens_per_image(self, enc)
        text_tokens = int(ids.shape[1]) - vision_tokens
        target = self._effective.get("vision_tokens")
        layout = self.family.layout(self, enc, image)
        tiling = layout.get("tiling")
        return Prepared(
            inputs=enc,
            input_text_tokens=text_tokens,
            actual_vision_tokens=vision_tokens,
            theoretical_vision_tokens=vision_tokens,
            target_vision_tokens=target,
            num_crops=layout.get("num_crops"),
            tiling=tuple(tiling) if tiling is not None else None,
            image_size=layout.get("image_size", (image.width, image.height)),
            extra={"prompt": text, "original_image_size": [image.width, image.height]},
        )

    @torch.inference_mode()
    def encode_vision(self, prepared: Prepared) -> dict[str, Any]:
        """Vision tower + projector, as ``generate`` runs them before its prefill.

        Returns the model kwargs with ``mm_encoder_outputs`` in place of the pixel inputs.
        """
        kwargs = {k: v for k, v in prepared.inputs.items() if k != "input_ids"}
        if supports_mm_encoder_outputs(self.model):
            kwargs = encode_multimodal(self.model, kwargs)
        # else: the family encodes images inside its first forward; vision time is then 0
        return kwargs

    @torch.inference_mode()
    def prefill(self, prepared: Prepared, vision: dict[str, Any]) -> HFDecodeState:
        """First forward over the prompt with the image features; picks token 1."""
        input_ids = prepared.inputs["input_ids"]
        token, kwargs = self._first_forward(prepared.inputs, vision)
        tok = int(token.item())
        state = HFDecodeState(
            input_ids=torch.cat([input_ids, token[:, None].to(input_ids.dtype)], dim=-1),
            model_kwargs=kwargs,
            token_ids=[tok],
            finished=tok in self._eos_ids(),
            prompt_len=int(input_ids.shape[1]),
        )
        return state

    def _first_forward(
        self, inputs: Mapping[str, Any], vision: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The prefill forward of a (padded) batch: each row's greedy token 1 and the kwargs."""
        from transformers import DynamicCache

        model = self.model
        raw = {k: v for k, v in inputs.items() if k != "input_ids"}
        input_ids = inputs["input_ids"]
        kwargs = dict(vision)
        if _accepts(model, "position_ids"):
            # as generate(): positions (M-RoPE for Qwen) from the raw inputs incl. image grids
            # and the attention mask (left padding: each row counts from its first token)
            kwargs["position_ids"] = generation_position_ids(model, input_ids, raw)
        mask = kwargs.get("attention_mask")
        if mask is not None and bool((mask == 1).all()):
            kwargs["attention_mask"] = None  # as generate(): no padding -> no mask work
        if _accepts(model, "logits_to_keep"):
            kwargs["logits_to_keep"] = 1
        # transformers 5 calls it ``cache`` (``past_key_values`` warns, then clashes with the
        # ``cache`` that _update_model_kwargs_for_generation adds); older ones the old name.
        key = (
            "cache"
            if _accepts(model, "cache", "prepare_inputs_for_generation")
            or _accepts(model, "cache")  # e.g. Gemma3: prepare_inputs passes **kwargs on
            else "past_key_values"
        )
        kwargs[key] = DynamicCache(config=model.config.get_text_config(decoder=True))
        kwargs["use_cache"] = True
        inputs = model.prepare_inputs_for_generation(input_ids, is_first_iteration=True, **kwargs)
        out = model(**inputs, return_dict=True)
        kwargs = update_generation_kwargs(model, out, kwargs)
        return out.logits[:, -1].float().argmax(-1), kwargs

    @torch.inference_mode()
    def decode(self, state: HFDecodeState, max_new_tokens: int | None = None) -> Generation:
        """Greedy steps with the KV cache until EOS or ``max_new_tokens`` tokens in all."""
        model = self.model
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        eos = self._eos_ids()
        ctx = decode_context(model)
        kwargs, ids = state.model_kwargs, state.input_ids
        with ctx:
            while not state.finished and len(state.token_ids) < limit:
                inputs = model.prepare_inputs_for_generation(ids, next_sequence_length=1, **kwargs)
                out = model(**inputs, return_dict=True)
                kwargs = update_generation_kwargs(model, out, kwargs)
                token = out.logits[:, -1].float().argmax(-1)
                ids = torch.cat([ids, token[:, None].to(ids.dtype)], dim=-1)
                tok = int(token.item())
                state.token_ids.append(tok)
                state.finished = tok in eos
        state.model_kwargs, state.input_ids = kwargs, ids
        text = self.processor.batch_decode([state.token_ids], skip_special_tokens=True)[0]
        return Generation(token_ids=list(state.token_ids), text=text.strip())

    # -------------------------------------------------- batched stages (BatchedAdapter)
    def collate(self, prepared: Sequence[Prepared]) -> dict[str, Any]:
        """The processor outputs of several samples as one left-padded batch.

        Per-token tensors (``input_ids`` and every tensor of its shape: the attention
        mask, token type ids) are padded on the left (the pad id, zeros); the others
        (pixels, image grids and sizes) are concatenated along their first axis, zero-
        padded where their other axes differ (SmolVLM's views, LLaVA's crops: the model
        drops all-zero views and unpads by ``image_sizes``, as for the processor's own
        padded batches).
        """
        encs = [p.inputs for p in prepared]
        width = max(int(e["input_ids"].shape[1]) for e in encs)
        pad_id = self._pad_id()
        out: dict[str, Any] = {}
        for key in encs[0]:
            values = [e[key] for e in encs]
            if not all(isinstance(v, torch.Tensor) for v in values):
                out[key] = values[0]
            elif all(v.shape == e["input_ids"].shape for v, e in zip(values, encs, strict=True)):
                fill = pad_id if key == "input_ids" else 0
                out[key] = torch.cat(
                    [
                        torch.nn.functional.pad(v, (width - v.shape[1], 0), value=fill)
                        for v in values
                    ]
                )
            else:
                out[key] = _cat_padded(values)
        return out

    @torch.inference_mode()
    def encode_vision_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return self.encode_vision(Prepared(inputs=batch, input_text_tokens=0))

    @torch.inference_mode()
    def prefill_batch(
        self, batch: Mapping[str, Any], vision: dict[str, Any], max_new_tokens: int
    ) -> BatchState:
        token, kwargs = self._first_forward(batch, vision)
        ids = batch["input_ids"]
        state = BatchState.start(int(ids.shape[0]), max_new_tokens)
        state.inner = HFDecodeState(
            input_ids=torch.cat([ids, token[:, None].to(ids.dtype)], dim=-1),
            model_kwargs=kwargs,
            token_ids=[],
            finished=False,
            prompt_len=int(ids.shape[1]),
        )
        eos = self._eos_ids()
        for i, tok in enumerate(token.tolist()):
            state.push(i, tok, tok in eos)
        return state

    @torch.inference_mode()
    def decode_step_batch(self, state: BatchState) -> None:
        """One greedy step for the whole batch; a finished row is fed the pad id, as
        ``generate`` does (its attention and cache grow, its tokens are not read)."""
        inner: HFDecodeState = state.inner
        alive = state.active()
        if not alive:
            return
        model, eos, pad_id = self.model, self._eos_ids(), self._pad_id()
        ctx = decode_context(model)
        kwargs, ids = inner.model_kwargs, inner.input_ids
        with ctx:
            inputs = model.prepare_inputs_for_generation(ids, next_sequence_length=1, **kwargs)
            out = model(**inputs, return_dict=True)
            kwargs = update_generation_kwargs(model, out, kwargs)
        token = out.logits[:, -1].float().argmax(-1)
        done = torch.tensor(state.finished, device=token.device)
        token = token.masked_fill(done, pad_id)
        inner.model_kwargs = kwargs
        inner.input_ids = torch.cat([ids, token[:, None].to(ids.dtype)], dim=-1)
        toks = token.tolist()
        for i in alive:
            state.push(i, toks[i], toks[i] in eos)

    def finish_batch(self, state: BatchState) -> list[Generation]:
        texts = self.processor.batch_decode(state.token_ids, skip_special_tokens=True)
        state.inner = None
        return [
            Generation(token_ids=list(t), text=x.strip())
            for t, x in zip(state.token_ids, texts, strict=True)
        ]

    def _pad_id(self) -> int:
        """The tokenizer's pad id, else the first EOS id, else 0."""
        tok = getattr(self.processor, "tokenizer", None)
        pad = getattr(tok, "pad_token_id", None)
        if isinstance(pad, int):
            return pad
        eos = sorted(self._eos_ids())
        return eos[0] if eos else 0

    @torch.inference_mode()
    def reference_generate(
        self, prepared: Prepared, max_new_tokens: int | None = None
    ) -> list[int]:
        """The tokens ``model.generate`` picks greedily for ``prepared`` (for checks)."""
        from transformers import GenerationConfig

        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        eos = sorted(self._eos_ids())
        cfg = GenerationConfig(
            do_sample=False,
            max_new_tokens=limit,
            eos_token_id=eos or None,
            pad_token_id=eos[0] if eos else 0,
        )
        inputs = dict(prepared.inputs)
        out = self.model.generate(**inputs, generation_config=cfg)
        return out[0, inputs["input_ids"].shape[1] :].tolist()

    def _eos_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.model.config.get_text_config().eos_token_id
        if eos is None:
            return set()
        return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def _cat_padded(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate along axis 0, zero-padding the other axes to the largest size."""
    shape = [max(int(v.shape[d]) for v in values) for d in range(1, values[0].dim())]
    padded = []
    for v in values:
        pad: list[int] = []
        for d in reversed(range(1, v.dim())):
            pad += [0, shape[d - 1] - int(v.shape[d])]
        padded.append(torch.nn.functional.pad(v, pad) if any(pad) else v)
    return torch.cat(padded)


def _num_experts(model: nn.Module, router: nn.Module) -> int:
    for attr in ("num_experts", "n_routed_experts"):
        n = getattr(router, attr, None) or getattr(model.config.get_text_config(), attr, None)
        if isinstance(n, int):
            return n
    weight = getattr(router, "weight", None)
    if isinstance(weight, torch.Tensor):
        return int(weight.shape[0])
    raise ConfigError(
        "model.path", type(model).__name__, "an MoE model whose config names num_experts"
    )


def _accepts(model: nn.Module, name: str, method: str = "forward") -> bool:
    """Whether ``model.<method>`` takes a ``name`` argument (prefill asks it per sample)."""
    return name in _parameters(type(model), method)


@functools.cache
def _parameters(cls: type, method: str) -> frozenset[str]:
    # per class, once: inspect.signature costs 15-25 us, inside the timed prefill
    return frozenset(inspect.signature(getattr(cls, method)).parameters)


def _open_image(image: Any, sample: Any) -> Any:
    """A PIL RGB image from a PIL image or a path; ``DataError`` naming the sample otherwise."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        with Image.open(image) as im:
            return im.convert("RGB")
    except (OSError, ValueError, TypeError) as exc:
        sid = getattr(sample, "sample_id", "?")
        raise DataError(f"sample {sid}: image {image!r} cannot be read ({exc})") from None
