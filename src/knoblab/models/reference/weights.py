"""Load and save the reference VLM's weights: safetensors plus a JSON config beside them.

The package ships ``weights/reference-v1.safetensors`` and ``weights/reference-v1.json``
(produced by the training recipe). ``load_reference()`` reads them; when they are not
there (a fresh checkout before training), it warns and returns a randomly initialised
model seeded with 0, so everything still runs (with chance-level accuracy).

NOTE: loading never unpickles: safetensors holds tensors only and the config is JSON.

Example:
    >>> model = load_reference()                     # shipped weights (or random + warning)
    >>> save_reference(model, "out/reference-v2.safetensors")
"""

from __future__ import annotations

import json
import os
import warnings
from importlib import resources
from pathlib import Path

import torch

from knoblab.errors import CheckpointError
from knoblab.models.reference.config import ReferenceConfig
from knoblab.models.reference.model import ReferenceVLM

WEIGHTS_NAME = "reference-v1"


def shipped_weights_path() -> Path:
    """Where the package's own weights live (whether or not they exist yet)."""
    return (
        Path(str(resources.files("knoblab.models.reference")))
        / "weights"
        / f"{WEIGHTS_NAME}.safetensors"
    )


def config_path_for(weights: str | os.PathLike[str]) -> Path:
    """The JSON config that sits beside a ``.safetensors`` file (same stem)."""
    return Path(weights).with_suffix(".json")


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
    from safetensors.torch import load_file

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
        cfg_path = config_path_for(path)
        try:
            cfg = (
                ReferenceConfig.from_dict(json.loads(cfg_path.read_text()))
                if cfg_path.exists()
                else ReferenceConfig()
            )
            state = load_file(str(path))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"model.weights={str(path)!r} cannot be read: {exc}") from exc
        model = ReferenceVLM(cfg)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"model.weights={str(path)!r} does not match the reference config: "
                f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
            )
    return model.to(device=device, dtype=dtype).eval()


def save_reference(model: ReferenceVLM, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights (safetensors) and config (JSON, same stem); returns the path.

    Writes to temporary files first and renames, so an interrupted save leaves the
    previous files intact.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": "knoblab-reference", "version": "1"})
    cfg_tmp = config_path_for(path).with_name(config_path_for(path).name + ".tmp")
    cfg_tmp.write_text(json.dumps(model.cfg.to_dict(), indent=2))
    os.replace(tmp, path)
    os.replace(cfg_tmp, config_path_for(path))
    return path
