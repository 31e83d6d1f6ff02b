"""The compact catalog columns: Arrow-backed list columns, list_matrix, and the coded columns of the item table
(each checked against a plain Python loop over the same rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rsir.data.archive import catalog_frame, list_contains, list_matrix
from rsir.query.items import Coded, month_of


def _table() -> pa.Table:
    return pa.table({
        "id": ["a", "b", "c", "d", "e"],
        "bbox": pa.array([[1.0, 2.0, 3.0, 4.0], None, [], [5.0, 6.0], [7.0, 8.0, 9.0, 10.0]],
                         type=pa.list_(pa.float64())),
        "modalities": pa.array([["s2", "s1"], ["s2"], None, ["s2", "s1"], []], type=pa.list_(pa.string())),
        "date": ["2017-06-01T10:00:00", None, "2018-13-01", "", "2017-06-01"],
    })


def test_catalog_frame_keeps_lists_in_arrow_and_reads_missing_as_empty() -> None:
    df = catalog_frame(_table())
    assert isinstance(df["bbox"].dtype, pd.ArrowDtype) and isinstance(df["modalities"].dtype, pd.ArrowDtype)
    assert list(df["modalities"]) == [["s2", "s1"], ["s2"], [], ["s2", "s1"], []]
    assert df.iloc[1].to_dict()["bbox"] == []
    assert df["date"].iat[0] == "2017-06-01T10:00:00"


@pytest.mark.parametrize("arrow", [True, False])
def test_list_matrix_matches_a_loop(arrow: bool) -> None:
    col = catalog_frame(_table())["bbox"]
    if not arrow:  # an object column (a catalog built in memory) takes the same path
        col = pd.Series([None, *list(col)[1:]], dtype=object)
    want = np.full((5, 4), np.nan)
    for p, b in enumerate(col):
        if b is not None and len(b) == 4:
            want[p] = b
    np.testing.assert_array_equal(list_matrix(col, 4, float, np.nan), want)
    # a slice of a column (offsets not starting at 0) and an empty column
    np.testing.assert_array_equal(list_matrix(col.iloc[3:], 4, float, np.nan), want[3:])
    assert list_matrix(col.iloc[:0], 4, float, np.nan).shape == (0, 4)


@pytest.mark.parametrize("arrow", [True, False])
def test_list_contains_matches_a_loop(arrow: bool) -> None:
    col = catalog_frame(_table())["modalities"]
    if not arrow:
        col = pd.Series([["s2", "s1"], ["s2"], None, ["s2", "s1"], []], dtype=object)
    for value in ("s1", "s2", "pair"):
        want = [value in (m if m is not None else []) for m in col]
        np.testing.assert_array_equal(list_contains(col, value), want)
    np.testing.assert_array_equal(list_contains(col.iloc[3:], "s1"), [True, False])  # offsets not at 0
    assert list_contains(col.iloc[:0], "s1").shape == (0,)


def test_coded_columns_answer_like_the_rows() -> None:
    df = catalog_frame(_table())
    mods = Coded.of_lists(df["modalities"])
    assert [mods[p] for p in range(5)] == [("s2", "s1"), ("s2",), (), ("s2", "s1"), ()]
    assert len(mods.values) == 3 and len(mods) == 5
    dates = Coded.of_strings(df["date"], width=10)
    assert [dates[p] for p in range(5)] == ["2017-06-01", "", "2018-13-01", "", "2017-06-01"]
    assert dates.counts() == {"2017-06-01": 2, "": 2, "2018-13-01": 1}
    np.testing.assert_array_equal(dates.mask(lambda d: d >= "2018"), [False, False, True, False, False])
    np.testing.assert_array_equal(dates.per_value(month_of, np.int8), [6, 0, 0, 0, 6])
    dates.append("2019-01-02")
    dates.append("2017-06-01")
    assert dates[5] == "2019-01-02" and dates[6] == "2017-06-01" and len(dates.values) == 4
    assert dates.counts()["2017-06-01"] == 3
    empty = Coded.of_strings(pd.Series([], dtype=object))
    assert len(empty) == 0 and empty.mask(lambda v: True).shape == (0,)
