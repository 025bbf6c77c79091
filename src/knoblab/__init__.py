"""knoblab: what a model's knobs cost and what they buy.

Profiles the accuracy and stage-wise latency (vision encoder, LLM prefill, LLM
decode) of vision-language models across knob settings, finds the Pareto front,
fits a latency estimator, and owns explicit dataset sampling and chunked training.
"""

from knoblab.errors import ConfigError, KnobLabError

__version__ = "0.1.0"
__all__ = ["ConfigError", "KnobLabError", "__version__"]
