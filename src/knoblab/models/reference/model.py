"""``ReferenceVLM``: patch encoder + projector + MoE decoder, with knobs and callable phases.

The three phases a profiler times are separate methods:

* ``encode_vision(vision_input)`` -> the valid vision tokens as LM embeddings ``(V, d)``;
* ``prefill(vision, prompt_ids)`` -> the first output token's logits and the KV cache
  over ``<bos> question vision <sep>`` (the question first: see ``_embeds``);
* ``decode_step(token, state)`` -> the next logits, extending the cache by one token.

``generate`` chains them greedily. Knobs are attributes set by ``set_knobs`` (or passed
to ``loss``): ``top_k`` experts per token and ``num_active_blocks`` (the first n blocks
run; ``active_block_indices`` lists them). The vision tier is a property of the
*input* (how the image is tiled), chosen in preprocessing.

Training: ``loss(batch)`` is the next-token cross-entropy on the answer tokens (answer
words and ``<eos>``) plus ``aux_loss_coef`` times the MoE load-balancing loss.

Example:
    >>> from PIL import Image
    >>> from knoblab.models.reference.preprocess import prepare_image
    >>> from knoblab.models.tiling import plan_tiling
    >>> model = ReferenceVLM(ReferenceConfig()).eval()
    >>> model.set_knobs(top_k=1, num_active_blocks=2)
    >>> plan = plan_tiling(64, 64, tokens_per_crop=9, patch_size=8, crop_size=24, tier="low")
    >>> vision_input = prepare_image(Image.new("RGB", (64, 64)), plan, model.cfg)
    >>> prompt_ids = model.tokenizer.encode("what color is the circle ?")
    >>> ids = model.generate(vision_input, prompt_ids, max_new_tokens=4)
    >>> 1 <= len(ids) <= 4
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from knoblab.errors import ConfigError
from knoblab.models.reference.batch import Batch
from knoblab.models.reference.config import ReferenceConfig
from knoblab.models.reference.encoder import PatchEncoder, fourier_features
from knoblab.models.reference.lm import DecoderLM, KVCache
from knoblab.models.reference.preprocess import VisionInput
from knoblab.models.reference.projector import Projector
from knoblab.models.reference.tokenizer import WordTokenizer


@dataclass
class DecodeState:
    """What decoding needs between steps: the cache, the next position, tokens so far."""

    cache: KVCache
    next_pos: int
    token_ids: list[int] = field(default_factory=list)
    logits: torch.Tensor | None = None
    step: int = 1  #: answer step of the next token fed (``<sep>`` was step 0)


@dataclass
class BatchDecode:
    """A left-padded batch between decode steps (``ReferenceVLM.prefill_batch``).

    Attributes:
        cache: per block ``(k, v)`` of shape ``(B, heads, S, head_dim)``, padding on the left.
        key_valid: ``(B, S)`` bool, False for the padding columns of the cache.
        next_pos: ``(B,)`` the position each row's next token takes (its own count).
        rows: the sample (index into the batch as given) each row holds; finished
            samples are dropped from the batch (:meth:`ReferenceVLM.select_rows`).
        logits: ``(B, vocab)`` the next token's logits per row.
        pad: per row, its padding columns on the left (kept on the host, with
            ``positions``, so that no step waits for the device to read them).
        positions: per row, ``next_pos`` on the host.
        step: answer step of the next tokens fed (the same in every row: all started
            together, and a finished row leaves the batch).
    """

    cache: KVCache
    key_valid: torch.Tensor
    next_pos: torch.Tensor
    rows: list[int]
    logits: torch.Tensor
    pad: list[int]
    positions: list[int]
    step: int = 1


def _left_pad(t: torch.Tensor, lens: Sequence[int], width: int) -> torch.Tensor:
    """``(1, H, sum(lens), D)`` packed sequences -> ``(B, H, width, D)``, each padded on the left."""
    out = t.new_zeros(len(lens), t.shape[1], width, t.shape[3])
    for i, part in enumerate(t.split(list(lens), 2)):
        out[i, :, width - part.shape[2] :] = part[0]
    return out


def _balanced_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with class 0 (background) and the other classes weighing a half each."""
    ce = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
    parts = [ce[m].mean() for m in (labels == 0, labels > 0) if bool(m.any())]
    return torch.stack(parts).mean() if parts else logits.sum() * 0.0


class ReferenceVLM(nn.Module):
    """The built-in reference vision-language model."""

    def __init__(self, cfg: ReferenceConfig | None = None, tokenizer: WordTokenizer | None = None):
        super().__init__()
        self.cfg = cfg or ReferenceConfig()
        self.tokenizer = tokenizer or WordTokenizer.load()
        if self.cfg.vocab_size < len(self.tokenizer):
            # Weights trained before words were appended (reference-v1): the later words
            # are <unk> to them (vocab.json only grows at the end).
            self.tokenizer = self.tokenizer.truncated(self.cfg.vocab_size)
        if len(self.tokenizer) != self.cfg.vocab_size:
            raise ConfigError(
                "vocab_size",
                self.cfg.vocab_size,
                f"{len(self.tokenizer)} (the tokenizer's vocabulary)",
            )
        self.encoder = PatchEncoder(self.cfg)
        self.projector = Projector(self.cfg)
        # Where each vision token lies in the image, given to the LM directly (as M-RoPE
        # gives Qwen2-VL's LM 2-D positions): ReferenceConfig.lm_vision_pos.
        self.vision_pos = (
            nn.Linear(4 * self.cfg.pos_frequencies, self.cfg.d_model)
            if self.cfg.lm_vision_pos
            else None
        )
        self.lm = DecoderLM(self.cfg)
        # Training-only heads: which object (colour x shape, or none) a patch holds, and
        # (on the LM's first block) whether a vision token holds an object the question names.
        self.patch_head = nn.Linear(self.cfg.vision_dim, self.cfg.patch_classes)
        self.relevance_head = nn.Linear(self.cfg.d_model, 3)
        self.top_k = self.cfg.top_k
        self.active_block_indices: list[int] = list(range(self.cfg.n_layers))

    # -- knobs -------------------------------------------------------------------------
    @property
    def num_total_blocks(self) -> int:
        return self.cfg.n_layers

    def block_indices(self, num_active_blocks: int) -> list[int]:
        """The blocks that run when ``num_active_blocks`` are active: the first n."""
        if (
            isinstance(num_active_blocks, bool)
            or not isinstance(num_active_blocks, int)
            or not (1 <= num_active_blocks <= self.cfg.n_layers)
        ):
            raise ConfigError(
                "knobs.num_active_blocks",
                num_active_blocks,
                f"an integer in 1..{self.cfg.n_layers}",
            )
        return list(range(num_active_blocks))

    def check_top_k(self, top_k: int) -> int:
        if (
            isinstance(top_k, bool)
            or not isinstance(top_k, int)
            or not 1 <= top_k <= self.cfg.num_experts
        ):
            raise ConfigError(
                "knobs.top_k", top_k, f"an integer in 1..{self.cfg.num_experts} (num_experts)"
            )
        return top_k

    def set_knobs(self, *, top_k: int | None = None, num_active_blocks: int | None = None) -> None:
        """Set ``top_k`` and/or ``num_active_blocks`` in place (no reload)."""
        if top_k is not None:
            self.top_k = self.check_top_k(top_k)
        if num_active_blocks is not None:
            self.active_block_indices = self.block_indices(num_active_blocks)

    # -- phases ------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return self.lm.embed.weight.device

    def _dtype(self) -> torch.dtype:
        return self.lm.embed.weight.dtype

    def _vision_features(
        self,
        pixels: torch.Tensor,
        positions: torch.Tensor,
        is_tile: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        feats = self.encoder(pixels.to(self._dtype()), positions.to(self._dtype()), is_tile)
        feats = feats.reshape(-1, feats.shape[-1])
        self._last_patch_features = feats  # for the training-time patch loss
        out = self.projector(feats[valid])
        if self.vision_pos is not None:
            pos = positions.to(self._dtype()).reshape(-1, 2)[valid]
            out = out + self.vision_pos(fourier_features(pos, self.cfg.pos_frequencies))
        return out

    def encode_vision(self, vi: VisionInput) -> torch.Tensor:
        """Vision encoder + projector: ``(V, d_model)`` embeddings of the valid patches."""
        dev = self._device()
        n = vi.pixels.shape[0]
        is_tile = torch.ones(n, dtype=torch.long, device=dev)
        is_tile[0] = 0
        return self._vision_features(
            vi.pixels.to(dev), vi.positions.to(dev), is_tile, (vi.patch_index >= 0).to(dev)
        )

    def _embeds(
        self, vision: torch.Tensor, prompt_ids: Sequence[int], extra_ids: Sequence[int] = ()
    ) -> torch.Tensor:
        """Input embeddings of ``<bos> question vision <sep> extra``.

        ``<sep>`` and ``extra`` (the answer) also get their answer-step embeddings.

        ``prompt_ids`` is the question followed by ``<sep>``. The question comes *before*
        the image: under the causal mask the vision tokens can then attend to it and
        pick out what it asks about (as instruction-aware Q-Formers do), which a small
        model learns far sooner than looking everything up from the answer position.
        """
        dev = self._device()
        ids = list(prompt_ids)
        if not ids or ids[-1] != self.tokenizer.sep_id:
            ids = ids + [self.tokenizer.sep_id]
        head = self.lm.embed(
            torch.tensor([self.tokenizer.bos_id, *ids[:-1]], dtype=torch.long, device=dev)
        )
        tail = self.lm.embed(torch.tensor([ids[-1], *extra_ids], dtype=torch.long, device=dev))
        tail = tail + self.lm.step_embed(0, tail.shape[0], dev)
        return torch.cat([head, vision.to(head.dtype), tail], dim=0)

    def prefill(self, vision: torch.Tensor, prompt_ids: Sequence[int]) -> DecodeState:
        """Run ``<bos> question vision <sep>`` through the LM; the state holds token 1's logits.

        ``prompt_ids`` are the question's ids followed by ``<sep>``.
        """
        x = self._embeds(vision, prompt_ids)[None]
        h, cache = self.lm(
            x,
            start_pos=0,
            active_blocks=self.active_block_indices,
            top_k=self.top_k,
            use_cache=True,
        )
        assert cache is not None
        return DecodeState(cache=cache, next_pos=x.shape[1], logits=self.lm.head(h[:, -1])[0])

    def decode_step(self, token_id: int, state: DecodeState) -> DecodeState:
        """Feed one token; the state's cache grows by one and holds the next logits."""
        dev = self._device()
        emb = self.lm.embed(torch.tensor([[token_id]], device=dev))
        emb = emb + self.lm.step_embed(state.step, 1, dev)
        h, cache = self.lm(
            emb,
            start_pos=state.next_pos,
            active_blocks=self.active_block_indices,
            top_k=self.top_k,
            cache=state.cache,
            use_cache=True,
        )
        assert cache is not None
        return DecodeState(
            cache=cache,
            next_pos=state.next_pos + 1,
            token_ids=state.token_ids,
            logits=self.lm.head(h[:, -1])[0],
            step=state.step + 1,
        )

    # -- batched phases (a left-padded batch; each row equals its batch-1 run) ---------
    def prefill_batch(
        self, visions: Sequence[torch.Tensor], prompt_ids: Sequence[Sequence[int]]
    ) -> BatchDecode:
        """``prefill`` for several samples at once; the cache comes back left-padded.

        The sequences are packed one after another (no padding to compute, as vLLM's
        prefill): the per-token layers run on all of them at once, and attention runs on
        each sequence alone with the batch-1 kernel, at its own positions. So each row's
        logits equal its batch-1 ``prefill``'s up to float rounding. The cache is then
        left-padded to the longest sequence for the batched decode steps.
        """
        embs = [self._embeds(v, p) for v, p in zip(visions, prompt_ids, strict=True)]
        lens = [int(e.shape[0]) for e in embs]
        dev, width = self._device(), max(lens)
        positions = torch.cat([torch.arange(n, device=dev) for n in lens])[None]
        h, packed = self.lm(
            torch.cat(embs)[None],
            start_pos=0,
            active_blocks=self.active_block_indices,
            top_k=self.top_k,
            use_cache=True,
            positions=positions,
            segments=lens,
        )
        assert packed is not None
        ends = torch.tensor(lens, device=dev).cumsum(0) - 1
        cache = {
            i: (_left_pad(k, lens, width), _left_pad(v, lens, width))
            for i, (k, v) in packed.items()
        }
        valid = (
            torch.arange(width, device=dev)[None]
            >= torch.tensor([width - n for n in lens], device=dev)[:, None]
        )
        return BatchDecode(
            cache=cache,
            key_valid=valid,
            next_pos=torch.tensor(lens, device=dev),
            rows=list(range(len(lens))),
            logits=self.lm.head(h[0, ends]),
            pad=[width - n for n in lens],
            positions=lens,
        )

    def select_rows(self, state: BatchDecode, keep: Sequence[int]) -> BatchDecode:
        """The batch with only rows ``keep`` (positions in ``state.rows``); common padding cut."""
        idx = torch.tensor(list(keep), dtype=torch.long, device=state.key_valid.device)
        valid = state.key_valid.index_select(0, idx)
        first = min(state.pad[j] for j in keep)  # leading columns that are padding in every row
        cache = {
            i: (k.index_select(0, idx)[:, :, first:], v.index_select(0, idx)[:, :, first:])
            for i, (k, v) in state.cache.items()
        }
        return BatchDecode(
            cache=cache,
            key_valid=valid[:, first:],
            next_pos=state.next_pos.index_select(0, idx),
            rows=[state.rows[j] for j in keep],
            logits=state.logits.index_select(0, idx),
            pad=[state.pad[j] - first for j in keep],
            positions=[state.positions[j] for j in keep],
            step=state.step,
        )

    def decode_step_batch(self, token_ids: Sequence[int], state: BatchDecode) -> BatchDecode:
        """``decode_step`` for every row: ``token_ids[j]`` is row j's next input token."""
        dev = self._device()
        emb = self.lm.embed(torch.tensor(list(token_ids), device=dev)[:, None])
        emb = emb + self.lm.step_embed(state.step, 1, dev)
        valid = torch.cat([state.key_valid, state.key_valid.new_ones(len(token_ids), 1)], dim=1)
        mask = None
        if any(state.pad):  # additive, built once per step (a bool mask is converted per block)
            mask = emb.new_zeros(valid.shape).masked_fill_(~valid, float("-inf"))[:, None, None]
        h, cache = self.lm(
            emb,
            start_pos=0,
            active_blocks=self.active_block_indices,
            top_k=self.top_k,
            cache=state.cache,
            use_cache=True,
            positions=state.next_pos[:, None],
            mask=mask,
        )
        assert cache is not None
        return BatchDecode(
            cache=cache,
            key_valid=valid,
            next_pos=state.next_pos + 1,
            rows=state.rows,
            logits=self.lm.head(h[:, -1]),
            pad=state.pad,
            positions=[p + 1 for p in state.positions],
            step=state.step + 1,
        )

    def greedy_decode(self, state: DecodeState, max_new_tokens: int) -> list[int]:
        """Greedy tokens from a prefilled state until ``<eos>`` (kept) or ``max_new_tokens`` in all."""
        out: list[int] = []
        while True:
            assert state.logits is not None
            tok = int(state.logits.argmax())
            out.append(tok)
            if tok == self.tokenizer.eos_id or len(out) >= max_new_tokens:
                return out
            if state.next_pos >= self.cfg.max_seq_len:
                return out
            state = self.decode_step(tok, state)

    @torch.inference_mode()
    def generate(
        self, vi: VisionInput, prompt_ids: Sequence[int], max_new_tokens: int = 16
    ) -> list[int]:
        """Greedy answer ids (``<eos>`` included when produced) for one image and prompt."""
        return self.greedy_decode(self.prefill(self.encode_vision(vi), prompt_ids), max_new_tokens)

    @torch.inference_mode()
    def full_logits(
        self, vi: VisionInput, prompt_ids: Sequence[int], extra_ids: Sequence[int] = ()
    ) -> torch.Tensor:
        """Logits at every position of the prompt plus ``extra_ids``, without a cache (for tests)."""
        x = self._embeds(self.encode_vision(vi), prompt_ids, extra_ids)[None]
        h, _ = self.lm(x, start_pos=0, active_blocks=self.active_block_indices, top_k=self.top_k)
        return self.lm.head(h)[0]

    # -- training ----------------------------------------------------------------------
    def loss(
        self,
        batch: Batch,
        *,
        top_k: int | None = None,
        num_active_blocks: int | None = None,
        aux_loss_coef: float = 0.01,
        patch_loss_coef: float = 0.5,
        relevance_loss_coef: float = 0.0,
    ) -> torch.Tensor:
        """Next-token cross-entropy on the answer tokens, averaged per sample (+ auxiliary losses).

        ``top_k`` / ``num_active_blocks`` override the model's knob settings for this
        call only (train with random values to keep every setting useful).

        Auxiliary terms, in training mode only: ``aux_loss_coef`` times the MoE
        load-balancing loss; ``patch_loss_coef`` times the patch loss when the batch
        has ``patch_labels`` (shapes-vqa does: which object's centre lies in each patch;
        the object patches and the background patches each weigh one half, as objects
        are a few percent of the patches); ``relevance_loss_coef`` times the relevance
        loss when the batch has ``relevance_labels``: after the LM's first block, each
        vision token says whether it holds the object the question names first, second,
        or neither (objects weigh 10x background).
        NOTE: both are deep supervision of a model trained from scratch on a CPU budget.
        The patch loss teaches the encoder to see colours and shapes from a dense signal;
        the relevance loss teaches the first block to pick out what the question asks
        about among ~100 vision tokens (with the question before the image, vision tokens
        attend to it). Through the one-word answer alone neither is learnt in 30 minutes
        (measured: the answer stays at its prior even with perfect patch features).
        Inference never uses the two heads.
        """
        dev = self._device()
        k = self.top_k if top_k is None else self.check_top_k(top_k)
        blocks = (
            self.active_block_indices
            if num_active_blocks is None
            else self.block_indices(num_active_blocks)
        )
        b = batch.to(dev)
        vis = self._vision_features(b.pixels, b.positions, b.is_tile, b.valid)
        tpc = self.cfg.tokens_per_crop
        per_sample_valid = b.valid.reshape(-1, tpc).sum(1).split(b.crop_counts)
        vis_split = vis.split([int(v.sum()) for v in per_sample_valid])
        seqs, labels = [], []
        for v, p, a in zip(vis_split, b.prompt_ids, b.answer_ids, strict=True):
            emb = self._embeds(v, p, a)
            lab = torch.full((emb.shape[0],), -100, dtype=torch.long, device=dev)
            # The token at position j predicts position j+1: the answer starts after <sep>.
            start = emb.shape[0] - len(a) - 1
            lab[start : start + len(a)] = torch.tensor(a, device=dev)
            seqs.append(emb)
            labels.append(lab)
        x = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        y = nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=-100)
        # Right padding is safe under a causal mask: real tokens never see the padding.
        relevance = (
            relevance_loss_coef and self.training and b.relevance_labels is not None
        ) and blocks[0] == 0
        h, _ = self.lm(
            x, start_pos=0, active_blocks=blocks, top_k=k, capture=0 if relevance else None
        )
        # Only positions with a label go through the head: most of the sequence is vision.
        sel = y != -100
        logits = self.lm.head(h[sel])
        # Each sample's tokens average first, then the samples: a 10-digit code weighs
        # what a one-word answer does, so the question types keep their share of the loss.
        ce = F.cross_entropy(logits.float(), y[sel], reduction="none")
        per_token = (1.0 / sel.sum(1).clamp(min=1).float())[:, None].expand_as(sel)[sel]
        loss = (ce * per_token).sum() / len(b.answer_ids)
        if aux_loss_coef and self.training:
            aux = [self.lm.blocks[i].moe.last_aux_loss for i in blocks]
            aux = [a for a in aux if a is not None]
            if aux:
                loss = loss + aux_loss_coef * torch.stack(aux).mean()
        if patch_loss_coef and self.training and b.patch_labels is not None:
            logits = self.patch_head(self._last_patch_features).float()
            loss = loss + patch_loss_coef * _balanced_ce(logits, b.patch_labels)
        if relevance:
            assert b.relevance_labels is not None
            hid = self.lm.captured
            # Sample i's vision tokens sit right after <bos> and its question.
            rows = [
                hid[i, len(p) : len(p) + len(v)]
                for i, (p, v) in enumerate(zip(b.prompt_ids, vis_split, strict=True))
            ]
            logits = self.relevance_head(torch.cat(rows)).float()
            weight = torch.tensor([1.0, 10.0, 10.0], device=dev)
            loss = loss + relevance_loss_coef * F.cross_entropy(
                logits, b.relevance_labels, weight=weight, ignore_index=-100
            )
        return loss

    def forward(self, batch: Batch, **kwargs: int | float | None) -> torch.Tensor:  # type: ignore[override]
        """Same as ``loss`` (so ``model(batch)`` works in training loops)."""
        return self.loss(batch, **kwargs)  # type: ignore[arg-type]

    @torch.no_grad()
    def predict(self, batch: Batch, *, max_new_tokens: int = 16) -> list[str]:
        """Greedy answers for a collated batch, one sample at a time (evaluation helper)."""
        tpc = self.cfg.tokens_per_crop
        dev = self._device()
        b = batch.to(dev)
        vis = self._vision_features(b.pixels, b.positions, b.is_tile, b.valid)
        per_sample_valid = b.valid.reshape(-1, tpc).sum(1).split(b.crop_counts)
        out = []
        for v, p in zip(
            vis.split([int(s.sum()) for s in per_sample_valid]), b.prompt_ids, strict=True
        ):
            ids = self.greedy_decode(self.prefill(v, p), max_new_tokens)
            out.append(self.tokenizer.decode(ids))
        return out
