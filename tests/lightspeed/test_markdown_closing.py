"""What an interrupted answer's last token closes: the Markdown the partial answer left open."""

from __future__ import annotations

import pytest

from lightspeed.answers.markdown import closing

CASES = [
    ("plain text, nothing open", "Run make run.", ""),
    ("an open code fence", "Run:\n```sh\nmake run", "\n```"),
    ("a closed code fence", "Run:\n```sh\nmake run\n```\nThen ask.", ""),
    ("a fence closed by a longer one", "```\nx\n````", ""),
    ("a tilde fence outlasting a shorter close", "~~~~\ncode\n~~~", "\n~~~~"),
    ("a backtick close does not close tildes", "~~~\ncode\n```", "\n~~~"),
    ("a fence with text after the close is still open", "```\nx\n``` not a close", "\n```"),
    ("nested block tags, innermost first", "<div>\n<table><tr><td>x", "\n</td>\n</tr>\n</table>\n</div>"),
    ("closed and self-closing tags", "<div><br/>x</div><details><summary>s</summary></details>", ""),
    ("inline tags are not blocks", "<b>bold <span>x", ""),
    ("an open comment", "x <!-- hidden", "\n-->"),
    ("a closed comment, then a block", "<!-- a --> <div>", "\n</div>"),
    ("a tag inside a comment opens nothing", "<!-- <div> -->", ""),
    ("inside a script nothing opens", "<script>\nif (a<b) {<div>", "\n</script>"),
    ("a closed style, then a block", "<style>x</style><details>", "\n</details>"),
    ("tags in a code block are code", "```\n<div>", "\n```"),
    ("a fence inside a block", "<div>\n```\ncode", "\n```\n</div>"),
    ("a fence inside a comment is not one", "<!--\n```", "\n-->"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_what_is_left_open_is_closed(text: str, expected: str) -> None:
    assert closing(text) == expected
