"""Test lanes: ``make test`` runs everything (what CI runs); ``make test-fast`` leaves out
the tests marked ``slow``, ``multiprocess``, ``crash`` or ``hf`` (see pyproject's markers).

Markers are set on the test itself where it is one test of a file (``@pytest.mark.slow``);
whole files and groups of parametrized cases are marked from ``LANES`` below, so the
lane of a file is visible in one place. A test lands in the fast lane unless something
marks it: a new slow test slows ``make test-fast`` until it gets a marker here or in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: marker -> node-id prefixes (a file, or a file::test) that carry it.
LANES: dict[str, tuple[str, ...]] = {
    # the Hugging Face matrix: tiny random checkpoints of every family
    "hf": (
        "tests/models/hf/",
        "tests/_compat/test_transformers.py",
        "tests/data/test_prompt.py",  # tiny HF chat checkpoints
    ),
    # processes of their own: torchrun / gloo DDP, the CLI in a subprocess, DataLoader workers
    "multiprocess": (
        "tests/test_cli.py",
        "tests/commands/test_plan_cli.py::test_subprocess_exit_code_and_no_traceback",
        "tests/analysis/test_report.py",
        "tests/training/test_recipe.py",
        "tests/sampling/test_chunked.py::test_close_stops_workers_and_keeps_the_position",
        "tests/sampling/test_chunked.py::test_workers_keep_the_order",
        "tests/training/test_chunked_lightning.py::test_resume_from_a_mid_chunk_checkpoint[2]",
    ),
    # a process killed mid-write and the rerun that recovers
    "crash": ("tests/profiling/test_crash.py",),
    # end-to-end runs: Lightning fits, sweeps through the CLI, the README's commands
    "slow": (
        "tests/test_readme.py",
        "tests/test_shipped_configs.py",
        "tests/test_doctests.py",  # every docstring example: tiny models, exports, a plan
        # the fault-injection suite: CLI runs, sweeps and fits broken on purpose
        "tests/faults/",
        # real tracking backends (wandb offline, an MLflow file store, TensorBoard event files)
        "tests/profiling/test_tracking.py::test_wandb_offline",
        "tests/profiling/test_tracking.py::test_mlflow_file_store",
        "tests/profiling/test_tracking.py::test_tensorboard",
        # analysis over records of the real runner (module fixtures run a sweep first)
        "tests/analysis/test_operators.py",
        "tests/analysis/test_real_records.py",
        "tests/analysis/test_estimator_knobs.py",
        "tests/analysis/test_intervals_e2e.py",
        "tests/analysis/test_figures.py::test_memory_view_and_drift_banner_only_when_recorded",
        "tests/profiling/test_batch.py::test_batch_of_one_equals_the_protocol",
        "tests/profiling/test_memory.py::test_reference_kv_bytes_equal_its_real_cache",
        "tests/profiling/test_interleave.py::test_wait_adapter_answers_the_same_interleaved_or_sequential",
        "tests/models/test_weights_format.py::test_the_reference_model_and_a_training_export_write_the_same_layout",
        "tests/models/test_weights_format.py::test_the_first_reference_layout_is_still_read",
        "tests/training/test_train.py",
        "tests/training/test_checkpoint.py",
        "tests/training/test_chunked_lightning.py",
        "tests/training/test_datamodule.py",
        "tests/training/test_chunk_lines.py",
        "tests/training/test_resume_schedule.py",
        "tests/training/test_accelerator.py",
        "tests/profiling/test_cli_profile.py",
        "tests/profiling/test_deep.py",
        "tests/profiling/test_runner.py",
        "tests/profiling/test_adapter_example.py",
        "tests/analysis/test_cli.py",
        "tests/analysis/test_bench_estimator.py",
        "tests/models/reference/",
        "tests/models/test_kind_import_path.py",
        "tests/data/test_export.py",
        "tests/_compat/test_lightning.py",
        # unit tests that cost over a second each (hypothesis sweeps, large synthetic data)
        "tests/sampling/test_legacy.py::test_sampling_overrides_rebuild_the_same_plan",
        "tests/models/test_device.py::test_hf_model_on_h100_without_cuda_is_one_line",
        "tests/data/test_shapes.py::test_hard_has_smaller_and_more_objects",
        "tests/data/test_shapes.py::test_question_mix_and_balanced_yes_no",
        "tests/data/test_shapes.py::test_aspect_ratios_span_1_3_to_3_1",
        "tests/data/test_shapes.py::test_answers_follow_from_objects",
        "tests/data/test_scoring.py::test_levenshtein_matches_textbook_dp",
        "tests/data/test_formats.py::test_hf_disk_save_to_disk_and_parquet",
        "tests/sampling/test_plan.py::test_many_short_randomized_epochs_match_epoch_by_epoch",
        "tests/sampling/test_plan.py::test_billion_sample_plan_is_lazy",
        "tests/sampling/test_plan.py::test_shards_partition_the_plan",
        "tests/sampling/test_plan.py::test_vectorised_many_key_permutation_equals_keyed_permutation",
        "tests/sampling/test_plan.py::test_shard_resume_yields_exactly_the_rest",
        "tests/sampling/test_plan.py::test_randomized_epoch_is_a_prefix_of_a_fresh_shuffle",
        "tests/sampling/test_plan.py::test_index_at_and_indices_agree_with_iteration",
        "tests/sampling/test_plan.py::test_resume_at_any_position_yields_exactly_the_rest",
        "tests/analysis/test_budget.py::test_unmeasured_configuration_is_predicted_and_labelled",
        "tests/analysis/test_estimator.py",
        "tests/commands/",
        "tests/sampling/test_subsets.py::test_allocate_is_largest_remainder",
        "tests/sampling/test_subsets.py::test_stratified_subset_keeps_each_share",
        "tests/sampling/test_subsets.py::test_fixed_subset_is_seed_003_index_for_index",
        "tests/models/test_tiling.py::test_tier_choice_is_least_distortion",
        "tests/sampling/test_plan.py::test_seed_selects_the_shuffle",
        "tests/sampling/test_plan.py::test_epoch_indices_equal_that_epoch_of_the_iteration",
        "tests/sampling/test_plan.py::test_last_epoch_cut",
        "tests/sampling/test_legacy.py::test_legacy_plan_equals_the_old_cyclic_loop",
        "tests/sampling/test_legacy.py::test_composed_config_from_the_cli_presets",
        "tests/models/test_device.py::test_reference_on_cuda_without_cuda_is_one_line",
        "tests/analysis/test_budget.py",
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        node = item.nodeid
        for marker, prefixes in LANES.items():
            if node.startswith(prefixes):
                item.add_marker(marker)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Not even import a file or folder whose whole lane ``-m "not <marker>"`` leaves out.

    Why: collecting imports every test module, and the slow ones import Lightning and
    transformers (seconds of the fast lane's budget for tests it then deselects).
    """
    expr = config.getoption("markexpr") or ""
    try:
        rel = collection_path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return None
    for marker, prefixes in LANES.items():
        if f"not {marker}" not in expr:
            continue
        for prefix in prefixes:
            if prefix.endswith("/"):
                hit = rel == prefix[:-1] or rel.startswith(prefix)
            else:
                hit = rel == prefix  # a whole file; a file::test prefix never matches a path
            if hit:
                return True
    return None


@pytest.fixture
def keep_torch_threads():
    """Restore torch's thread count after the test: the ``cpu`` hardware preset that a real
    ``knoblab profile`` applies sets it process-wide."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def load_bench():
    """``load_bench("bench_x")``: the script ``benchmarks/bench_x.py`` as a module, for
    tests of its functions (the scripts are not a package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
