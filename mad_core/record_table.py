"""A trial's records as Parquet: the columnar table a sweep stores for every trial.

A part is one Parquet file holding the complete records of generations ``first`` to
``last`` of one trial: one row per generation, one column per record key (integers as
int64, everything else float64; +-inf and nan as themselves). Its name says its range,
``g0000001-0000250.parquet``, so a reader knows what a folder of parts covers from a
listing alone. A trial's parts do not overlap and together hold generations 1..G.
"""

from __future__ import annotations

import io
import re
from typing import Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

PARTS_FOLDER = "records"  # where a sweep keeps a trial's parts, in its child run's artifacts
PART_PATTERN = re.compile(r"^g(\d{7})-(\d{7})\.parquet$")


def part_name(first: int, last: int) -> str:
    """File name of the part holding generations first..last (1-based, inclusive)."""
    return f"g{first:07d}-{last:07d}.parquet"


def part_range(name: str) -> tuple[int, int] | None:
    """(first, last) generation of a part's file name; None for any other name."""
    match = PART_PATTERN.match(name)
    return (int(match[1]), int(match[2])) if match else None


def _column(values: list) -> pa.Array:
    integral = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return pa.array(values, type=pa.int64() if integral else pa.float64())


def encode_part(records: list[Mapping[str, float | int]]) -> bytes:
    """Parquet bytes of consecutive records (dicts with the same keys, ``generation``
    among them), columns in the first record's key order."""
    if not records:
        raise ValueError("a part holds at least one record")
    keys = list(records[0])
    table = pa.table({key: _column([record[key] for record in records]) for key in keys})
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def read_parts(sources: Iterable) -> pa.Table:
    """One table of the parts (paths or file-like objects), sorted by generation.

    Columns missing from some parts (a metric that only later generations have) are
    null there; a key whose type differs between parts is read as float64.
    """
    tables = [pq.read_table(source) for source in sources]
    if not tables:
        raise ValueError("no record parts to read")
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.sort_by("generation")
