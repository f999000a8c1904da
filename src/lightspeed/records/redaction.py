"""Removing personal data and secrets from user text before it reaches disk.

Every default rule runs in time linear in the text: quantifiers are bounded,
and a rule that could start anywhere inside a long run of word characters is
anchored with a look-behind so that only the start of the run is tried. A
1 MiB body therefore costs tens of milliseconds per rule, not minutes
(`bench/redaction_bench.py` measures it). A regular expression holds the GIL
while it scans, so a thread would still pause every other request for the
length of a rule: texts longer than `INLINE_CHARS` go to one worker process
instead (started on first use), which also contains operators' own patterns.
"""

from __future__ import annotations

import asyncio
import ipaddress
import multiprocessing
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from lightspeed_common.config import RedactionConfig, RedactionPattern

# Below this many characters, all rules together take about a millisecond: not worth a process hop.
INLINE_CHARS = 16384


@dataclass(frozen=True)
class Rule:
    name: str
    regex: re.Pattern[str]
    replacement: str
    # Matches this rejects stay (card-like numbers must pass the Luhn check).
    accept: Callable[[re.Match[str]], bool] | None = None
    # A cheap test that the rule cannot match (a needed character or word is absent): then it is skipped.
    # Most text has no e-mail address or key in it, and the full patterns cost tens of microseconds each.
    could_match: Callable[[str], bool] | None = None

    def apply(self, text: str) -> str:
        if self.could_match is not None and not self.could_match(text):
            return text
        accept = self.accept
        if accept is None:
            return self.regex.sub(self.replacement, text)
        return self.regex.sub(lambda m: m.expand(self.replacement) if accept(m) else m.group(0), text)


def _luhn_ok(match: re.Match[str]) -> bool:
    digits = [int(c) for c in match.group(0) if c.isdigit()]
    checksum = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 else digit
        checksum += doubled - 9 if doubled > 9 else doubled
    return checksum % 10 == 0


def _looks_random(match: re.Match[str]) -> bool:
    """A 40-character base64 word is an AWS secret key only if it mixes cases and digits.

    Git commit ids and other hex digests (lower case only) stay.
    """
    text = match.group(0)
    return any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)


def _is_ipv6(match: re.Match[str]) -> bool:
    """A valid IPv6 address with a digit in it: `a::b` and `std::vector` are C++, not addresses."""
    text = match.group(0)
    if not any(c.isdigit() for c in text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


_CREDENTIAL_NAME = re.compile(
    r"(?i)password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential"
)


def _names_a_credential(match: re.Match[str]) -> bool:
    return _CREDENTIAL_NAME.search(match.group(1)) is not None


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|0?[1-9]?\d|00\d)"

# Order matters: secrets and e-mail addresses go before the looser numeric rules.
DEFAULT_PATTERNS: tuple[RedactionPattern, ...] = (
    RedactionPattern(
        name="private_key",
        # The body may not contain another BEGIN, so a text of many BEGINs without an END is read once.
        pattern=(
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----(?:[^-]|-(?!----(?:BEGIN|END) ))*"
            r"-----END [A-Z ]{0,40}PRIVATE KEY-----"
        ),
        replacement="[REDACTED_PRIVATE_KEY]",
    ),
    RedactionPattern(
        name="bearer_token",
        pattern=r"(?i)\b(bearer|token|basic)\s{1,8}[A-Za-z0-9._~+/=-]{16,}",
        replacement=r"\1 [REDACTED_TOKEN]",
    ),
    RedactionPattern(
        name="assigned_secret",
        # Any `name = value` whose name contains a credential word (checked in code: a keyword inside the
        # pattern made it try every keyword at every word start, several times slower).
        pattern=(
            r"(?<![\w-])([\w-]{1,96})(\s{0,8}[:=]\s{0,8})"
            r"(\"[^\"\n]{0,1024}\"|'[^'\n]{0,1024}'|(?![\w.]{1,64}\()[^\s\"']\S{0,1023})"
        ),
        replacement=r"\1\2[REDACTED_SECRET]",
    ),
    RedactionPattern(
        name="known_key_format",
        pattern=(
            r"(?<![\w-])(?:sk-[A-Za-z0-9_-]{16,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
            r"|AIza[A-Za-z0-9_-]{35}|A[KS]IA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|lsk_[A-Za-z0-9_-]{32,}"
            r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
        ),
        replacement="[REDACTED_TOKEN]",
    ),
    RedactionPattern(
        name="aws_secret_key",
        pattern=r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
        replacement="[REDACTED_SECRET]",
    ),
    RedactionPattern(
        name="email",
        # \w takes internationalised (IDN) local parts and domains; the look-behind keeps it linear.
        pattern=r"(?<![\w.%+-])[\w.%+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}\.(?:xn--[a-z0-9-]{1,59}|[^\W\d_]{2,63})",
        replacement="[REDACTED_EMAIL]",
    ),
    RedactionPattern(
        name="ipv4",
        pattern=rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)",
        replacement="[REDACTED_IP]",
    ),
    RedactionPattern(
        name="ipv6",
        pattern=r"(?i)(?<![\w:.])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])",
        replacement="[REDACTED_IP]",
    ),
    RedactionPattern(
        name="us_ssn",
        pattern=r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])",
        replacement="[REDACTED_SSN]",
    ),
    RedactionPattern(
        name="card_number",
        # `(?<![\w-])\d` written digit first: a pattern that starts with a character class lets the regex
        # engine skip to the next digit in C, where a leading look-behind is tried at every position. Same
        # matches, half the time over a page of technical text (which has enough digits to need this rule).
        pattern=r"\d(?<![\w-]\d)(?:[ -]?\d){12,18}(?![\w-])",
        replacement="[REDACTED_CARD]",
    ),
)

# Each starts with a literal character, which the regex engine finds with a fast scan: checking these
# costs a fraction of running the full rules over text that has no address or number in it.
_DOTTED_OCTETS = re.compile(r"\.\d{1,3}\.\d")
_COLON_GROUPS = re.compile(r":[0-9A-Fa-f]{0,4}:")
_SSN_MIDDLE = re.compile(r"-\d\d-\d")
_DIGITS = "0123456789"
_KEY_PREFIXES = (
    "sk-", "sk_", "rk_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "AIza", "AKIA", "ASIA",
    "xox", "lsk_", "eyJ",
)  # fmt: skip
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/=-")
_CREDENTIAL_HINTS = ("pass", "secret", "token", "key", "credential")


# Necessary conditions of the default rules, checked before the full pattern runs. Module-level
# functions, not lambdas: rules travel to the worker process by pickle.
def _may_hold_private_key(text: str) -> bool:
    return "-----BEGIN " in text


def _occurrences(lowered: str, word: str) -> Iterator[int]:
    at = lowered.find(word)
    while at != -1:
        yield at
        at = lowered.find(word, at + 1)


def _may_hold_bearer(text: str) -> bool:
    """A scheme word, white space, then at least 16 token characters."""
    lowered = text.lower()
    for word in ("bearer", "token", "basic"):
        for at in _occurrences(lowered, word):
            after = text[at + len(word) : at + len(word) + 24]  # up to 8 spaces, then 16 token characters
            token = after.lstrip()
            if len(token) < len(after) and len(token) >= 16 and all(c in _TOKEN_CHARS for c in token[:16]):
                return True
    return False


def _may_hold_assignment(text: str) -> bool:
    """A credential word inside a name that is followed (after spaces) by `=` or `:`."""
    if "=" not in text and ":" not in text:
        return False
    lowered = text.lower()
    for hint in _CREDENTIAL_HINTS:
        for at in _occurrences(lowered, hint):
            end = at + len(hint)
            while end < len(lowered) and end - at < 96 and (lowered[end].isalnum() or lowered[end] in "_-"):
                end += 1
            if lowered[end : end + 9].lstrip()[:1] in ("=", ":"):
                return True
    return False


_BASE64_RUN = re.compile(r"[A-Za-z0-9/+]{40}")


def _may_hold_long_word(text: str) -> bool:
    return any(len(word) >= 40 and _BASE64_RUN.search(word) for word in text.split())


def _may_hold_known_key(text: str) -> bool:
    return any(prefix in text for prefix in _KEY_PREFIXES)


def _may_hold_email(text: str) -> bool:
    return "@" in text


def _may_hold_ipv4(text: str) -> bool:
    return _DOTTED_OCTETS.search(text) is not None


def _may_hold_ipv6(text: str) -> bool:
    return _COLON_GROUPS.search(text) is not None


def _may_hold_ssn(text: str) -> bool:
    return _SSN_MIDDLE.search(text) is not None


def _may_hold_card(text: str) -> bool:
    return sum(text.count(digit) for digit in _DIGITS) >= 13


_COULD_MATCH: dict[str, Callable[[str], bool]] = {
    "private_key": _may_hold_private_key,
    "bearer_token": _may_hold_bearer,
    "assigned_secret": _may_hold_assignment,
    "known_key_format": _may_hold_known_key,
    "email": _may_hold_email,
    "ipv4": _may_hold_ipv4,
    "ipv6": _may_hold_ipv6,
    "us_ssn": _may_hold_ssn,
    "card_number": _may_hold_card,
    "aws_secret_key": _may_hold_long_word,
}

_CHECKS: dict[str, Callable[[re.Match[str]], bool]] = {
    "card_number": _luhn_ok,
    "ipv6": _is_ipv6,
    "aws_secret_key": _looks_random,
    "assigned_secret": _names_a_credential,
}


class Redactor:
    """Applies the configured rules in order; card numbers must pass the Luhn check.

    Picklable (compiled patterns and module-level checks), so the worker
    process receives the very same rules.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._rules = tuple(rules)
        self._pool: ProcessPoolExecutor | None = None

    def __getstate__(self) -> dict[str, object]:
        return {"_rules": self._rules, "_pool": None}

    @classmethod
    def from_config(cls, config: RedactionConfig) -> Redactor:
        chosen = (*DEFAULT_PATTERNS, *config.patterns) if config.use_default_patterns else config.patterns
        return cls(
            Rule(
                p.name,
                re.compile(p.pattern),
                p.replacement,
                _CHECKS.get(p.name),
                _COULD_MATCH.get(p.name) if p in DEFAULT_PATTERNS else None,
            )
            for p in chosen
        )

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def __call__(self, text: str) -> str:
        for rule in self._rules:
            text = rule.apply(text)
        return text

    def redact_each(self, texts: Sequence[str]) -> list[str]:
        return [self(text) for text in texts]

    async def redact(self, text: str) -> str:
        """The same, in the worker process when the text is long enough to be felt by other requests."""
        return (await self.redact_all([text]))[0]

    async def redact_all(self, texts: Sequence[str]) -> list[str]:
        """Each text redacted: on the event loop while they are short together, in the worker process
        once their total is long enough to be felt by other requests (one request's many short texts
        add up: 54 attachments of 16 KiB each stalled the loop for two seconds)."""
        if sum(map(len, texts)) <= INLINE_CHARS:
            return self.redact_each(texts)
        if self._pool is None:
            # spawn, not fork: the server process has torch's and the writer's threads.
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return await asyncio.wrap_future(self._pool.submit(self.redact_each, list(texts)))

    async def close(self) -> None:
        """Stop the worker process, if one was started."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
