"""``knoblab export-data``: write dataset samples as a JSONL manifest plus images.

    knoblab export-data [GROUP=OPTION ...] [key=value ...] [-m] [--debug]

The samples are the first ``num_samples`` of the dataset's sampling plan (default:
indices 0, 1, 2, ...). The work is ``knoblab.data.export.export_dataset``.
"""

from __future__ import annotations

import itertools
from typing import Any

from knoblab.atomic import ensure_dir
from knoblab.errors import ConfigError

CONFIG_NAME = "export_data"
#: Shown by ``--help``; tests/commands/test_help_examples.py runs each one.
EXAMPLES = (
    "knoblab export-data out_dir=exports/hard num_samples=200 dataset.variant=hard",
    "knoblab export-data dataset=shapes_vqa_hard dataset/sampling@dataset.sampling=random num_samples=50 out_dir=exports/hard_random",
    "knoblab export-data -m dataset=shapes_vqa,shapes_vqa_hard num_samples=20   # one folder per dataset",
)


def run(cfg: Any) -> str:
    """Export per a composed ``export_data`` config; returns the manifest path."""
    from knoblab.config import check_int, plain
    from knoblab.data.export import export_dataset
    from knoblab.data.registry import build_dataset
    from knoblab.sampling.legacy import resolve_sampling

    data = plain(cfg)
    allowed = {"dataset", "out_dir", "num_samples", "overwrite"}
    for key in data:
        if key not in allowed:
            from knoblab.errors import UnknownKeyError

            raise UnknownKeyError(key, data[key], allowed)
    if not data.get("out_dir"):
        raise ConfigError("out_dir", data.get("out_dir"), "a folder path")
    overwrite = data.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise ConfigError("overwrite", overwrite, "true/false")
    n = data.get("num_samples")
    check_int("num_samples", n, 1, allow_none=True, none_means="the whole plan")
    dataset = build_dataset(data["dataset"])
    ensure_dir(data["out_dir"], "out_dir")
    plan = resolve_sampling(data, len(dataset))
    indices = itertools.islice(iter(plan), n) if n is not None else iter(plan)
    total = min(n, len(plan)) if isinstance(n, int) else len(plan)
    manifest = export_dataset(
        dataset, data["out_dir"], num_samples=n, indices=indices, overwrite=overwrite
    )
    print(f"wrote {total} samples of {getattr(dataset, 'name', 'dataset')} to {manifest}")
    return str(manifest)


def _validate(cfg: Any) -> Any:
    from knoblab.commands.validate import validate_export_data

    return validate_export_data(cfg)


def main(argv: list[str]) -> int:
    from knoblab.hydra_utils import run_command

    return run_command(
        argv, __doc__ or "", CONFIG_NAME, run, "knoblab export-data", EXAMPLES, validator=_validate
    )
