"""Removing personal data and secrets from question text before it reaches disk."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lightspeed.config import RedactionConfig, RedactionPattern


@dataclass(frozen=True)
class Rule:
    name: str
    regex: re.Pattern[str]
    replacement: str
    # Matches this rejects stay (card-like numbers must pass the Luhn check).
    accept: Callable[[str], bool] | None = None

    def apply(self, text: str) -> str:
        accept = self.accept
        if accept is None:
            return self.regex.sub(self.replacement, text)
        return self.regex.sub(lambda m: m.expand(self.replacement) if accept(m.group(0)) else m.group(0), text)


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    checksum = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 else digit
        checksum += doubled - 9 if doubled > 9 else doubled
    return checksum % 10 == 0


# Order matters: secrets and e-mail addresses go before the looser numeric rules.
DEFAULT_PATTERNS: tuple[RedactionPattern, ...] = (
    RedactionPattern(
        name="private_key",
        pattern=r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        replacement="[REDACTED_PRIVATE_KEY]",
    ),
    RedactionPattern(
        name="bearer_token",
        pattern=r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{16,}",
        replacement=r"\1 [REDACTED_TOKEN]",
    ),
    RedactionPattern(
        name="assigned_secret",
        pattern=(
            r"(?i)\b([a-z0-9_]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)"
            r"[a-z0-9_]*)(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
        ),
        replacement=r"\1\2[REDACTED_SECRET]",
    ),
    RedactionPattern(
        name="known_key_format",
        pattern=(
            r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
            r"|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
            r"\.[A-Za-z0-9_-]{8,})"
        ),
        replacement="[REDACTED_TOKEN]",
    ),
    RedactionPattern(
        name="email",
        pattern=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
        replacement="[REDACTED_EMAIL]",
    ),
    RedactionPattern(
        name="ipv4",
        pattern=r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
        replacement="[REDACTED_IP]",
    ),
    RedactionPattern(
        name="ipv6",
        pattern=r"(?i)(?<![\w:.])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])",
        replacement="[REDACTED_IP]",
    ),
    RedactionPattern(
        name="card_number",
        pattern=r"\b\d(?:[ -]?\d){12,18}\b",
        replacement="[REDACTED_CARD]",
    ),
)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


_CHECKS: dict[str, Callable[[str], bool]] = {"card_number": _luhn_ok, "ipv6": _is_ipv6}


class Redactor:
    """Applies the configured rules in order; card numbers must pass the Luhn check."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._rules = tuple(rules)

    @classmethod
    def from_config(cls, config: RedactionConfig) -> Redactor:
        chosen = (*DEFAULT_PATTERNS, *config.patterns) if config.use_default_patterns else config.patterns
        return cls(Rule(p.name, re.compile(p.pattern), p.replacement, _CHECKS.get(p.name)) for p in chosen)

    def __call__(self, text: str) -> str:
        for rule in self._rules:
            text = rule.apply(text)
        return text
