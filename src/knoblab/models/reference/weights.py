"""Load and save the reference VLM's weights in knoblab's one weights format.

The package ships ``weights/reference-v2.safetensors`` and ``weights/reference-v2.json``
(produced by the training recipe; v2 reads codes: a longer vocabulary, answer-step
embeddings, code-character patch classes), in :mod:`knoblab.models.weights_format` (kind
``reference``, config ``{"arch": ReferenceConfig}``; the first layout, a bare
architecture JSON, is read too). Weights of ``reference-v1`` (before the codes) still
load from their own path: their config has no ``answer_steps`` (read as 0) nor
``lm_vision_pos`` (read as False) and names its smaller ``vocab_size`` (the words added
later are ``<unk>`` to them). ``load_reference()`` reads them; when they are not
there (a fresh checkout before training), it warns and returns a randomly initialised
model seeded with 0, so everything still runs (with chance-level accuracy).

NOTE: loading never unpickles: safetensors holds tensors only and the config is JSON.

Example:
    >>> model = load_reference()                     # shipped weights (or random + warning)
    >>> save_reference(model, "out/reference-v2.safetensors")
    PosixPath('out/reference-v2.safetensors')
"""

from __future__ import annotations

import os
import warnings
from importlib import resources
from pathlib import Path

import torch

from knoblab.errors import CheckpointError, KnobLabError
from knoblab.models.reference.config import ReferenceConfig
from knoblab.models.reference.model import ReferenceVLM
from knoblab.models.weights_format import read_weights, sidecar_path, write_weights

WEIGHTS_NAME = "reference-v2"


def shipped_weights_path() -> Path:
    """Where the package's own weights live (whether or not they exist yet)."""
    return (
        Path(str(resources.files("knoblab.models.reference")))
        / "weights"
        / f"{WEIGHTS_NAME}.safetensors"
    )


def config_path_for(weights: str | os.PathLike[str]) -> Path:
    """The JSON sidecar that sits beside a ``.safetensors`` file (same stem)."""
    return sidecar_path(weights)


def random_reference(cfg: ReferenceConfig | None = None, seed: int = 0) -> ReferenceVLM:
    """A randomly initialised model, the same for the same ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ReferenceVLM(cfg)


def load_reference(
    weights: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ReferenceVLM:
    """The reference VLM with ``weights`` (None: the shipped ones), in eval mode.

    Raises:
        CheckpointError: ``weights`` was given and is missing, unreadable, or does not
            match its config.
    """

    path = Path(weights) if weights is not None else shipped_weights_path()
    if not path.exists():
        if weights is not None:
            raise CheckpointError(
                f"model.weights={str(weights)!r} does not exist: allowed is a .safetensors file or null (shipped weights)"
            )
        warnings.warn(
            f"reference weights not found at {path}; using random initialisation (seed 0): "
            "answers will be at chance level. Train them with `knoblab train` (reference recipe).",
            UserWarning,
            stacklevel=2,
        )
        model = random_reference()
    else:
        model = _load_file(path)
    return model.to(device=device, dtype=dtype).eval()


def _load_file(path: Path) -> ReferenceVLM:
    """The model of a weights file; one-line errors on any mismatch."""
    f = read_weights(path, key="model.weights", legacy_kind="reference")
    if f.kind != "reference":
        raise CheckpointError(
            f"model.weights={str(path)!r} holds a {f.kind!r} model: allowed is reference weights"
        )
    cfg_path = config_path_for(path)
    try:
        cfg = ReferenceConfig.from_saved(dict(f.config.get("arch") or {}))
    except (ValueError, TypeError, KnobLabError) as exc:
        raise CheckpointError(
            f"model.weights: config {str(cfg_path)!r} is invalid: {exc}"
        ) from None
    state = f.state
    model = ReferenceVLM(cfg)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"model.weights={str(path)!r} does not match the reference config: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    shape = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if shape:
        k = shape[0]
        raise CheckpointError(
            f"model.weights={str(path)!r} does not match the reference config "
            f"{str(cfg_path.name)!r}: {len(shape)} tensor(s) of another shape "
            f"(e.g. {k}: {tuple(state[k].shape)}, the config needs {tuple(own[k].shape)})"
        )
    model.load_state_dict(state, strict=True)
    return model


def save_reference(model: ReferenceVLM, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights (float32) and architecture in the one weights format.

    Writes to temporary files first and renames, so an interrupted save leaves the
    previous files intact. Returns the ``.safetensors`` path. The same tensors always
    give the same bytes (a hash of the file identifies the weights).
    """
    state = {k: v.to("cpu", torch.float32) for k, v in model.state_dict().items()}
    path, _ = write_weights(path, state, "reference", {"arch": model.cfg.to_dict()})
    return path
