"""Column names and types of the catalog tables (see docs/ARCHITECTURE.md).

Types are DuckDB SQL types; Parquet files are written from them, so every reader (DuckDB,
pyarrow, pandas) sees the same schema whether a table has rows or not.
`samples` is `teminal.pipeline.compose.SampleRecipe`, field for field and in order, its
optional columns last (tests/manifests/test_schema.py checks that they agree).
"""
from __future__ import annotations

TABLES: dict[str, list[tuple[str, str]]] = {
    "sources": [
        ("source_id", "VARCHAR"), ("dataset", "VARCHAR"), ("path", "VARCHAR"),
        ("split", "VARCHAR"), ("fold", "INTEGER"), ("label", "VARCHAR"),
        ("captions", "VARCHAR[]"), ("sample_rate", "INTEGER"), ("duration", "DOUBLE"),
    ],
    "samples": [
        ("key", "VARCHAR"), ("group_key", "VARCHAR"), ("stage", "VARCHAR"), ("split", "VARCHAR"),
        ("relation", "VARCHAR"), ("shard", "VARCHAR"), ("source_ids", "VARCHAR[]"),
        ("labels", "VARCHAR[]"), ("caption", "VARCHAR"), ("captions", "VARCHAR[]"),
        ("template_ids", "VARCHAR[]"), ("offsets", "DOUBLE[]"), ("gains_db", "DOUBLE[]"),
        ("snr_db", "DOUBLE"), ("augment", "VARCHAR"), ("seed", "BIGINT"),
        ("sample_rate", "INTEGER"), ("num_samples", "BIGINT"), ("sha256", "VARCHAR"),
        ("dataset", "VARCHAR"), ("build_id", "VARCHAR"), ("source_offsets", "DOUBLE[]"),
        ("pad", "VARCHAR"), ("target_db", "DOUBLE"), ("ceiling", "DOUBLE"),
        ("recipe_version", "INTEGER"),
    ],
    "shards": [
        ("path", "VARCHAR"), ("stage", "VARCHAR"), ("split", "VARCHAR"),
        ("num_groups", "INTEGER"), ("num_samples", "INTEGER"), ("bytes", "BIGINT"),
        ("sha256", "VARCHAR"),
    ],
    "rejects": [
        ("path", "VARCHAR"), ("reason", "VARCHAR"), ("dataset", "VARCHAR"), ("phase", "VARCHAR"),
    ],
    "builds": [
        ("build_id", "VARCHAR"), ("config", "VARCHAR"), ("version", "VARCHAR"),
        ("synthetic", "BOOLEAN"),
    ],
}

# Columns a table holds only when some row sets them (non-null), after its other columns: a
# build that never sets them writes the Parquet bytes it wrote before the column existed.
# samples.slot_lengths: timed builds only (issue 25); a missing or null value is the midpoint
# layout (compose.SampleRecipe).
OPTIONAL_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "samples": [("slot_lengths", "DOUBLE[]")],
}

# Rows are written in this order so that the Parquet bytes do not depend on build order.
SORT_KEYS: dict[str, list[str]] = {
    "sources": ["source_id"],
    "samples": ["key"],
    "shards": ["path"],
    "rejects": ["phase", "path", "reason"],
    "builds": ["build_id"],
}


def columns(table: str) -> list[str]:
    """The columns every `table` holds (its optional ones excluded)."""
    return [name for name, _ in TABLES[table]]


def optional_columns(table: str) -> list[str]:
    return [name for name, _ in OPTIONAL_COLUMNS.get(table, [])]
