"""Models behind one adapter protocol: the built-in reference VLM and Hugging Face families."""

from knoblab.models.adapter import Generation, KnobSpec, ModelAdapter, Prepared

__all__ = ["Generation", "KnobSpec", "ModelAdapter", "Prepared"]
