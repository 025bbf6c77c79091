"""The one home of the sweep record's shape: schema, aggregates, writer, reader, migrations.

``knoblab profile`` writes and ``knoblab analyze`` reads through this package only, so
both agree on every field (seed 002's names: ``aggregate_stats.T_total_p95``,
``per_sample_results``, the file naming), on the statistics (``std`` with ``ddof=1``,
numpy's linear percentiles) and on when a percentile is trusted
(:func:`min_samples_for`). ``docs/profiling.md`` lists every field.

Layering: imports ``knoblab.errors`` and ``knoblab.atomic`` only (and numpy; pandas
when writing ``samples.parquet``).

Example:
    >>> from knoblab.records import SCHEMA_VERSION, migrate_record
    >>> migrate_record({"knobs": {"top_k": 2}, "per_sample_results": []})["schema_version"] == SCHEMA_VERSION
    True
"""

from knoblab.records.aggregate import IntervalSettings, aggregate_stats, build_record
from knoblab.records.io import (
    check_belongs,
    config_key,
    dumpb,
    dumps,
    foreign_reason,
    is_record,
    jsonable,
    load_records,
    read_json,
    read_record,
    read_sweep,
    record_filename,
    remove_stale_tmp,
    sample_rows,
    task_name,
    write_json_atomic,
    write_record,
    write_samples_parquet,
    write_sweep,
)
from knoblab.records.migrate import MIGRATIONS, migrate_record, record_version
from knoblab.records.schema import (
    DEFAULT_PERCENTILES,
    INTERVAL_FIELDS,
    LATENCY_FIELDS,
    NOT_RECORDS,
    PERCENTILES,
    SCHEMA_VERSION,
    SEED_KNOBS,
    STAGE_NAMES,
    STAGE_SHORT_NAMES,
    STAGES,
    STATS,
    STATUSES,
    TIER_ORDER,
    TIERS,
    TOKEN_FIELDS,
    VISION_KNOBS,
    Record,
    SampleRow,
    check_percentiles,
    check_record,
    check_sweep,
    is_percentile_warning,
    min_samples_for,
    percentile_name,
    percentile_warnings,
    record_percentiles,
    stats_for,
)

__all__ = [
    "DEFAULT_PERCENTILES",
    "INTERVAL_FIELDS",
    "IntervalSettings",
    "LATENCY_FIELDS",
    "MIGRATIONS",
    "NOT_RECORDS",
    "PERCENTILES",
    "SCHEMA_VERSION",
    "SEED_KNOBS",
    "STAGES",
    "STAGE_NAMES",
    "STAGE_SHORT_NAMES",
    "STATS",
    "STATUSES",
    "TIERS",
    "TIER_ORDER",
    "TOKEN_FIELDS",
    "VISION_KNOBS",
    "Record",
    "SampleRow",
    "aggregate_stats",
    "build_record",
    "check_belongs",
    "check_percentiles",
    "check_record",
    "check_sweep",
    "config_key",
    "dumpb",
    "dumps",
    "foreign_reason",
    "is_percentile_warning",
    "is_record",
    "jsonable",
    "load_records",
    "migrate_record",
    "min_samples_for",
    "percentile_name",
    "percentile_warnings",
    "read_json",
    "read_record",
    "read_sweep",
    "record_filename",
    "record_percentiles",
    "record_version",
    "remove_stale_tmp",
    "sample_rows",
    "stats_for",
    "task_name",
    "write_json_atomic",
    "write_record",
    "write_samples_parquet",
    "write_sweep",
]
