"""What closes the Markdown an answer cut short leaves open, so what was sent still renders.

A stream its user interrupts ends with a last token (lightspeed-stack's
behaviour): whatever the partial answer left open, then a note that it was
stopped. Left open, a code fence would swallow the note and everything a chat
window shows after it. What is closed: a fenced code block (``` or ~~~, as
long as its opening), an HTML comment, a <script> or <style> element, and
block-level HTML elements (innermost first).
"""

from __future__ import annotations

import re

STOPPED_NOTE = "\n\n*Response stopped by the user.*"
BLOCK_TAGS = frozenset(
    {"div", "table", "tr", "td", "th", "thead", "tbody", "tfoot", "caption", "details", "summary", "pre"}
)
RAW_TAGS = frozenset({"script", "style"})  # their content is not Markdown nor HTML: nothing in it opens anything
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_TAG = re.compile(r"<(/?)([A-Za-z][\w-]*)[^<>]*?(/?)>")
_COMMENT_START, _COMMENT_END = "<!--", "-->"


class _OpenParts:
    def __init__(self) -> None:
        self.fence = ""  # the open code fence's marker
        self.comment = False
        self.raw = ""  # the open <script> or <style>
        self.blocks: list[str] = []

    def line(self, line: str) -> None:
        if self.fence:
            # Closed by a run of the same character, at least as long, with nothing after it.
            found = _FENCE.match(line)
            if found and found.group(1).startswith(self.fence) and not line[found.end() :].strip(" \t"):
                self.fence = ""
            return
        if not self.comment and not self.raw and (found := _FENCE.match(line)):
            self.fence = found.group(1)
            return
        self._html(line)

    def _html(self, line: str) -> None:
        at = 0
        while at < len(line):
            if self.comment:
                end = line.find(_COMMENT_END, at)
                if end < 0:
                    return
                self.comment, at = False, end + len(_COMMENT_END)
                continue
            tag = _TAG.search(line, at)
            comment = line.find(_COMMENT_START, at)
            if comment >= 0 and not self.raw and (tag is None or comment < tag.start()):
                self.comment, at = True, comment + len(_COMMENT_START)
                continue
            if tag is None:
                return
            self._tag(tag.group(2).lower(), closing=tag.group(1) == "/", empty=tag.group(3) == "/")
            at = tag.end()

    def _tag(self, name: str, *, closing: bool, empty: bool) -> None:
        if self.raw:
            if closing and name == self.raw:
                self.raw = ""
        elif empty:
            return
        elif name in RAW_TAGS:
            self.raw = "" if closing else name
        elif name in BLOCK_TAGS:
            if not closing:
                self.blocks.append(name)
            elif self.blocks and self.blocks[-1] == name:
                self.blocks.pop()

    def closing(self) -> str:
        inner = f"\n{self.fence}" if self.fence else ""
        inner = inner or (f"\n{_COMMENT_END}" if self.comment else f"\n</{self.raw}>" if self.raw else "")
        return inner + "".join(f"\n</{name}>" for name in reversed(self.blocks))


def closing(text: str) -> str:
    """What to append to `text` to close the Markdown constructs it leaves open ("" when none)."""
    parts = _OpenParts()
    for line in text.split("\n"):
        parts.line(line)
    return parts.closing()
