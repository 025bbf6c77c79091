"""Models and datasets as users name them: a local folder, or a hub id from the local cache.

``model.path`` and ``dataset.path`` (``dataset=hf``) may be a hub id (``org/name``, e.g.
``Qwen/Qwen2.5-VL-3B-Instruct``); it is looked up in the local
Hugging Face cache only — ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub`` — with ``huggingface_hub.snapshot_download(local_files_only=True)``.
Nothing is ever downloaded: fetch the model once yourself (``hf download org/name``).

NOTE: the cache folder is read from the environment at each call, not from
``huggingface_hub.constants`` (fixed when that module was first imported), so a test or a
job script may point ``HF_HUB_CACHE`` elsewhere at run time.

Usage (with the model in the local Hugging Face cache)::

    resolve_checkpoint("Qwen/Qwen2.5-VL-3B-Instruct")
    # PosixPath('/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-VL-3B-Instruct/snapshots/6628...')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from knoblab.errors import ConfigError

#: ``org/name`` as the hub spells repository ids (one slash, no leading ``.`` or ``/``).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_cache_dir() -> Path:
    """The hub cache folder this process would use (``HF_HUB_CACHE`` > ``HF_HOME/hub``)."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(key):
            return Path(os.environ[key]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def is_hub_id(text: str) -> bool:
    """Whether ``text`` reads as a hub repository id rather than a path."""
    return bool(HUB_ID.match(text)) and not Path(text).expanduser().exists()


def resolve_checkpoint(path: str, key: str = "model.path") -> Path:
    """The local folder of model ``path``: itself when it is a folder, else its cached snapshot.

    Raises:
        ConfigError: neither an existing folder nor a hub id in the local cache; the
            message names the cache folder it looked in.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if not is_hub_id(path):
        raise ConfigError(
            key, path, "an existing local checkpoint folder, or a hub id org/name in the HF cache"
        )
    return cached_snapshot(path, "model", key)


def cached_snapshot(repo_id: str, repo_type: str, key: str) -> Path:
    """The snapshot folder of hub repository ``repo_id`` in the local cache (never downloads).

    Raises:
        ConfigError: not in the cache; names the folder it looked in.
    """
    from huggingface_hub import snapshot_download  # called with local_files_only=True only
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir()
    folder = cache / (f"{repo_type}s--" + repo_id.replace("/", "--"))
    try:
        return Path(
            snapshot_download(repo_id, repo_type=repo_type, cache_dir=cache, local_files_only=True)
        )
    except (LocalEntryNotFoundError, OSError, ValueError):
        fetch = "hf download " + (f"--repo-type {repo_type} " if repo_type != "model" else "")
        raise ConfigError(
            key,
            repo_id,
            "a local folder or a hub id already in the local HF cache (nothing is downloaded)",
            f"looked in {folder}; set HF_HUB_CACHE or HF_HOME, or fetch it first with "
            f"`{fetch}{repo_id}`",
        ) from None
