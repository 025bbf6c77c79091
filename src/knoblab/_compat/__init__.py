"""Private or version-specific APIs of other libraries, one small module per library.

Each module has a test under ``tests/_compat/`` that fails loudly when a release
changes what knoblab relies on.
"""
