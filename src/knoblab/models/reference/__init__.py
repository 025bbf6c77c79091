"""The built-in reference VLM: patch encoder, projector, MoE decoder, word tokenizer.

``load_reference()`` gives the model with the shipped weights; ``ReferenceAdapter``
puts it behind the adapter protocol; ``collate`` + ``ReferenceVLM.loss`` train it.
"""

from knoblab._lazy import lazy_exports

_EXPORTS = {
    "ReferenceConfig": "config",
    "ReferenceVLM": "model",
    "DecodeState": "model",
    "WordTokenizer": "tokenizer",
    "Batch": "batch",
    "collate": "batch",
    "load_reference": "weights",
    "save_reference": "weights",
    "random_reference": "weights",
    "shipped_weights_path": "weights",
    "ReferenceAdapter": "adapter",
    "build": "adapter",
    "plan_image": "preprocess",
    "prepare_image": "preprocess",
    "VisionInput": "preprocess",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
