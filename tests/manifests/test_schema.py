"""The catalog's `samples` table is the recipe: same fields, same order, matching types."""
from __future__ import annotations

import dataclasses
import typing

from teminal.manifests.schema import OPTIONAL_COLUMNS, TABLES, columns, optional_columns
from teminal.pipeline.compose import SampleRecipe

# Python annotation of a recipe field -> the DuckDB type its column must have
SQL_OF = {str: "VARCHAR", int: ("INTEGER", "BIGINT"), float: "DOUBLE",
          list[str]: "VARCHAR[]", list[str | None]: "VARCHAR[]", list[float]: "DOUBLE[]",
          float | None: "DOUBLE", list[float] | None: "DOUBLE[]"}


def test_samples_columns_are_the_recipe_fields_in_order():
    # the optional columns (written only by builds that set them) are the last fields
    assert columns("samples") + optional_columns("samples") == \
        [f.name for f in dataclasses.fields(SampleRecipe)]


def test_samples_column_types_match_the_recipe_annotations():
    hints = typing.get_type_hints(SampleRecipe)
    for name, sql in TABLES["samples"] + OPTIONAL_COLUMNS["samples"]:
        expected = SQL_OF[hints[name]]
        assert sql in (expected if isinstance(expected, tuple) else (expected,)), (name, sql, hints[name])
