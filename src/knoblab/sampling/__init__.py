"""Explicit, reproducible dataset sampling shared by profiling and training."""

from knoblab.sampling.permutation import KeyedPermutation, mix_key

__all__ = ["KeyedPermutation", "mix_key"]
