"""Profiling: stage timing, knob designs, the sweep runner (Stage 1) and deep profiling (Stage 2).

Public names: ``StageTimer``, ``make_design``, ``run_sweep``, ``run_sweeps``,
``SweepResult``, ``aggregate_stats``, ``record_filename``, ``load_records``,
``deep_profile``. Imported lazily so that the CLI starts fast.
"""

from knoblab._lazy import lazy_exports

_EXPORTS = {
    "StageTimer": "timer",
    "make_design": "design",
    "DesignConfig": "design",
    "run_sweep": "runner",
    "run_sweeps": "runner",
    "SweepResult": "runner",
    "RunConfig": "runner",
    "build_record": "records",
    "aggregate_stats": "records",
    "record_filename": "records",
    "load_records": "records",
    "write_json_atomic": "records",
    "apply_hardware": "hardware",
    "deep_profile": "deep",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
