"""Explicit, reproducible dataset sampling shared by profiling and training.

Public names (see DESIGN.md): ``SamplingConfig``, ``SamplingPlan``, ``resolve_sampling``,
``ChunkedSampler``, ``ChunkedDataLoader``, ``resolve_chunk_sizes``, ``KeyedPermutation``.
Imported lazily so that the CLI starts fast.
"""

from knoblab._lazy import lazy_exports

_EXPORTS = {
    "KeyedPermutation": "permutation",
    "mix_key": "permutation",
    "SamplingConfig": "plan",
    "SamplingPlan": "plan",
    "resolve_sampling": "legacy",
    "fixed_subset": "subsets",
    "stratified_subset": "subsets",
    "ChunkedSampler": "chunked",
    "ChunkedDataLoader": "chunked",
    "resolve_chunk_sizes": "chunked",
    "ChunkSizes": "chunked",
    "validate_chunk_sizes": "chunked",
    "PlanShard": "plan",
    "WeightedMultiDatasetSampler": "weighted",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
