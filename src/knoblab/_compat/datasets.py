"""datasets' table of packaged builders (a private module constant).

``dataset=hf`` lets a bare ``path`` through to ``load_dataset`` only when it names a
packaged builder (``imagefolder``, ``parquet`` ...), which needs no hub; any other bare
name would be looked up online. Tested in ``tests/_compat``.
"""

from __future__ import annotations

import functools


@functools.cache
def packaged_builders() -> frozenset[str]:
    """The names ``load_dataset`` resolves to a builder shipped inside ``datasets``."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return frozenset(_PACKAGED_DATASETS_MODULES)
