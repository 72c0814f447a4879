"""Trajectory texts as the preference sets compare them: normalised for the duplicate and
leakage filters, split into thinking and answer line, and hashed into the ids rows carry.

Everything here runs on whole columns (Arrow compute kernels), so 480k trajectories take
seconds; only the sha256 of the ids is per row (hashlib has no vectorised form).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# The module has no public name for its pattern; reusing it keeps one definition of the format.
from cpo_pipeline.radiology.answer_format import (
    ANSWER_PATTERN,
    TrajectoryFormatError,
    format_trajectory,
    parse_trajectory,
)
from cpo_pipeline.radiology.chexpert import NO_FINDING
from cpo_pipeline.storage import content_hash

THINK_CLOSE = "</think>"
# "The disease of this patient is ": the answer line less its diagnoses and full stop, taken
# from the formatter itself so the two cannot drift apart.
ANSWER_PREFIX = (format_trajectory("-", [NO_FINDING]).partition(THINK_CLOSE)[2].strip()
                 .removesuffix(f"{NO_FINDING}."))
_FORMAT = "(?s)" + ANSWER_PATTERN.pattern  # RE2 spelling of the pattern's re.DOTALL
ID_LENGTH = 16
_SEPARATOR = "\x1f"


def strings(values: pd.Series | pa.Array) -> pa.Array:
    """A column as one Arrow large_string array (nulls kept): zero-copy for pandas' Arrow-backed
    strings, converted for object columns, cast for numbers."""
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string())


def normalise(texts: pd.Series | pa.Array) -> pa.Array:
    """Texts in the form the duplicate and leakage filters compare, nulls kept.

    The rule: lower-cased (Unicode); every number written in ASCII digits, with its decimal or
    thousands separators ("2.5", "1,000", "3"), becomes "0"; every run of characters that are
    neither letters, digits nor spaces (punctuation, symbols, tabs, line breaks) becomes one
    space; runs of spaces collapse to one and the ends are trimmed. So "Small LEFT effusion,
    2.5 cm." and "small left effusion 3 cm" are the same text; "no effusion" and "effusion" are
    not.
    """
    text = pc.utf8_lower(strings(texts))
    text = pc.replace_substring_regex(text, r"\d+(?:[.,]\d+)*", "0")
    # Only runs of what is not kept, then runs of two or more spaces: replacing every single
    # space as well would cost a match per word.
    text = pc.replace_substring_regex(text, r"[^\p{L}\p{N} ]+", " ")
    text = pc.replace_substring_regex(text, r" {2,}", " ")
    return pc.utf8_trim_whitespace(text)


def text_ids(*columns: pd.Series | pa.Array) -> list[np.ndarray]:
    """For each column, an int64 id per row: equal ids exactly where the `normalise`d texts are
    equal, across all the columns given; -1 for a null text."""
    lengths = [len(column) for column in columns]
    if not any(lengths):
        return [np.empty(0, dtype=np.int64) for _ in columns]
    joined = normalise(pa.concat_arrays([strings(column) for column in columns]))
    indices = pc.fill_null(pc.dictionary_encode(joined).indices, -1)
    ids = indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return np.split(ids, np.cumsum(lengths)[:-1])


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def answers(texts: pd.Series, rows: pd.DataFrame) -> pd.DataFrame:
    """Each trajectory's answer line ("The disease of this patient is X.") and its diagnosis X,
    indexed like `texts`.

    Every text must be in the answer format (`radiology.answer_format`); the first that is not
    raises TrajectoryFormatError naming its row of `rows` (study, kind, target) and the reason.
    """
    array = strings(texts)
    valid = pc.fill_null(pc.match_substring_regex(array, _FORMAT), False)
    valid = valid.to_numpy(zero_copy_only=False)
    if not valid.all():
        position = int(np.flatnonzero(~valid)[0])
        row = rows.iloc[position]
        where = ", ".join(f"{name} {_plain(row[name])!r}" for name in
                          ("study_id", "kind", "target_disease") if name in rows.columns)
        text = texts.iloc[position]
        try:
            parse_trajectory(text if isinstance(text, str) else "")
        except TrajectoryFormatError as error:
            reason = str(error)
        else:  # the two regex engines disagree: name it rather than guess
            reason = f"the text does not match the answer format: {text[:120]!r}"
        raise TrajectoryFormatError(
            f"{int((~valid).sum())} trajectory texts are not in the answer format; the first, "
            f"{where}: {reason}")
    line = pc.utf8_trim_whitespace(pc.list_element(
        pc.split_pattern(array, THINK_CLOSE, max_splits=1), 1))
    diagnosis = pc.utf8_slice_codeunits(line, len(ANSWER_PREFIX), -1)
    return pd.DataFrame({"answer": line.to_pandas(), "diagnosis": diagnosis.to_pandas()}
                        ).set_axis(texts.index)


def row_ids(columns: Sequence[pd.Series | pa.Array]) -> pd.Series:
    """A stable id per row: the first 16 hex digits of the `content_hash` (sha256) of the row's
    values as text joined by U+001F (a null as the empty string), indexed like the columns
    (0.. for Arrow arrays)."""
    first = columns[0]
    index = first.index if isinstance(first, pd.Series) else pd.RangeIndex(len(first))
    if not len(index):
        return pd.Series([], dtype=object, index=index)
    parts = [pc.fill_null(strings(column), "") for column in columns]
    keys = pc.binary_join_element_wise(*parts, pa.scalar(_SEPARATOR, pa.large_string()))
    keys = keys.to_pylist()
    return pd.Series([content_hash(key)[:ID_LENGTH] for key in keys], index=index, dtype=object)


def digests(texts: pd.Series | pa.Array) -> pd.Series:
    """Each text's `row_ids` digest: what pair and example ids hash instead of the whole text."""
    return row_ids([texts])
