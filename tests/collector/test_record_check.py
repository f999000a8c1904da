"""The collector's check that a file is a record (a JSON object): Python's parser decides, as on the
ingest's side, even where the faster parser answers first."""

from __future__ import annotations

import json

import pytest

from collector.delivery import SHALLOW, json_problem

RECORD = json.dumps({"metadata": {"user_id": "u" * 64}, "llm_response": "a" * 1700, "rag_chunks": [{"n": 1}]})
CASES = {
    "a record": RECORD.encode(),
    "an empty object": b"{}",
    "NaN": b'{"score": NaN}',
    "a number past a double": b'{"n": 1e400}',
    "an integer past 64 bits": b'{"n": 99999999999999999999999}',
    "a lone surrogate": b'{"s": "\\ud800"}',
    "a byte order mark": b"\xef\xbb\xbf{}",
    "whitespace around": b" \n{}\n ",
    "a duplicate key": b'{"a": 1, "a": 2}',
    "UTF-16": '{"a": 1}'.encode("utf-16-le"),
    "nested just under the cut": b'{"a":' * (SHALLOW - 1) + b"1" + b"}" * (SHALLOW - 1),
    "nested past Python's parser, not orjson's": b'{"a":' * 1000 + b"1" + b"}" * 1000,
    "nested past both": b"[" * 5000 + b"]" * 5000,
    "a list": b"[1, 2]",
    "a string": b'"text"',
    "a number": b"42",
    "null": b"null",
    "truncated": b'{"a": ',
    "trailing garbage": b"{} x",
    "a raw control character": b'{"a": "\x01"}',
    "invalid UTF-8": b'{"a": "\xff"}',
    "empty": b"",
}


def python_says(data: bytes) -> bool:
    """Whether Python's parser takes `data` as a JSON object (what the ingest checks)."""
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, RecursionError):
        return False


@pytest.mark.parametrize("data", CASES.values(), ids=CASES.keys())
def test_a_file_is_a_record_exactly_when_pythons_parser_takes_it_as_an_object(data: bytes) -> None:
    assert (json_problem(data) is None) == python_says(data)


def test_the_reason_says_what_is_wrong() -> None:
    assert json_problem(b"[1]") == "not a JSON object"
    assert (json_problem(b'{"a": ') or "").startswith("not valid JSON: ")
    assert json_problem(b"[" * 5000 + b"]" * 5000) == "not valid JSON: JSON nested too deeply"
