"""The experiments' tables: a rich table on the console, the same table as Markdown, and CSV files."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from pose_prior.io import atomic_write_text


def make_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> Table:
    """First column left-aligned (row labels), the others right-aligned (numbers)."""
    table = Table(title=None if markdown else title, box=box.MARKDOWN if markdown else box.SIMPLE_HEAD)
    for col in columns:
        table.add_column(col, justify="left" if col == columns[0] else "right")
    for row in rows:
        table.add_row(*row)
    return table


def table_markdown(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table as Markdown (rich's MARKDOWN box)."""
    buf = io.StringIO()
    Console(file=buf, width=400, color_system=None).print(make_table("", columns, rows, markdown=True))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()).strip() + "\n"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    # wide enough that numeric columns are not wrapped on a narrow terminal
    Console(width=max(Console().width, 40 + 16 * len(columns))).print(make_table(title, columns, rows))


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A results table as CSV (atomically): one line per row dict, `columns` in order, other keys left out."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
