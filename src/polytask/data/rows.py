"""One labelled example as read from a user's data file, with the place it came from.

Every later error about an example (a bad label, an empty text) names ``location``, so a user can open the file at
the right line without guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """A row of a data file: column name -> value, plus where it starts.

    ``values`` hold strings for csv/tsv/lines, lists of strings for conll/jointbert word and tag columns, and the
    JSON types (str, int, float, bool, None, lists, dicts) for jsonl and Hugging Face datasets.
    """

    values: dict[str, Any]
    location: str  # "path/to/file.tsv:17" (1-based line where the row starts) or "hf:NAME[split] row 17"
    file: str  # the path (or "hf:NAME[split]")
    line: int  # 1-based line (row index + 1 for Hugging Face datasets)
