"""The one home of every private or version-specific API of the libraries knoblab builds on.

The rule: code in ``knoblab`` that needs a private name (``obj._something``), a
version-dependent signature, or matches a library's log or error *text* of torch,
Lightning, transformers, safetensors or Hydra calls a function here instead, one module
per library (``knoblab._compat.torch``, ``knoblab._compat.lightning``, ...). Each
function says why the private use is needed and has a test in ``tests/_compat/`` that
exercises the real library, so that a release which moves or renames the private
fails that test loudly (naming the function) instead of silently changing knoblab's
behaviour somewhere else.

This package sits at the bottom of the import graph: it imports only the third-party
library it wraps (lazily where that library is heavy) and ``knoblab.errors``.
"""
