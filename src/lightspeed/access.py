"""Authorization: roles to actions, as lightspeed-stack's `authorization.access_rules` define them.

Every caller has the `*` role besides its own. A role granted the `admin` action may do
everything. Without access rules the built-in policy holds: every caller the user actions,
the `admin` role (the api-key module's `role: admin`, every noop caller) also this server's
administration and reading or deleting others' conversations, but neither listing nor
continuing them: a user's conversations stay theirs unless access rules say otherwise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jsonpath_ng.parser import parse as parse_jsonpath

from lightspeed_common.config_auth import AccessRule, Action, JsonPathOperator, JwtRoleRule
from lightspeed_common.errors import Forbidden

EVERYONE = "*"
ADMIN_ROLE = "admin"

USER_ACTIONS = (
    Action.QUERY,
    Action.STREAMING_QUERY,
    Action.GET_CONVERSATION,
    Action.LIST_CONVERSATIONS,
    Action.DELETE_CONVERSATION,
    Action.UPDATE_CONVERSATION,
    Action.FEEDBACK,
    Action.GET_MODELS,
    Action.GET_TOOLS,
    Action.GET_SHIELDS,
    Action.LIST_PROVIDERS,
    Action.GET_PROVIDER,
    Action.LIST_RAGS,
    Action.GET_RAG,
    Action.INFO,
    Action.MODEL_OVERRIDE,
    Action.GET_METRICS,
)
ADMIN_ACTIONS = (
    Action.GET_CONFIG,
    Action.MANAGE_FEEDBACK,
    Action.GET_EMBEDDING_MODELS,
    Action.MANAGE_EMBEDDING_MODELS,
    Action.GET_TELEMETRY,
    Action.MANAGE_TELEMETRY,
    Action.VIEW_SETTINGS,
    Action.READ_OTHERS_CONVERSATIONS,
    Action.DELETE_OTHERS_CONVERSATIONS,
    # Here the admin action is only what routes require it for (erasing another user's data), not all.
    Action.ADMIN,
)
# Built, not validated: a configured rule may not give `admin` beside other actions.
BUILT_IN_RULES = (
    AccessRule(role=EVERYONE, actions=USER_ACTIONS),
    AccessRule.model_construct(role=ADMIN_ROLE, actions=ADMIN_ACTIONS),
)
EVERY_ACTION = frozenset(Action) - {Action.ADMIN}


class Policy:
    """Which actions a set of roles may take."""

    def __init__(self, rules: Iterable[AccessRule], *, admin_is_everything: bool = True) -> None:
        self._admin_is_everything = admin_is_everything
        lookup: dict[str, set[Action]] = {}
        for rule in rules:
            lookup.setdefault(rule.role, set()).update(rule.actions)
        self._lookup = {role: frozenset(actions) for role, actions in lookup.items()}
        self.roles = frozenset(self._lookup)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - few role sets, one policy per server
    def actions(self, roles: frozenset[str]) -> frozenset[Action]:
        """What `roles` (with `*` added) may do; the admin action stands for all of them."""
        granted = frozenset().union(*(self._lookup.get(role, ()) for role in roles | {EVERYONE}))
        return EVERY_ACTION | {Action.ADMIN} if Action.ADMIN in granted and self._admin_is_everything else granted


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    roles: frozenset[str]
    actions: frozenset[Action]

    def may(self, action: Action) -> bool:
        return action in self.actions


def policy_for(rules: tuple[AccessRule, ...]) -> Policy:
    return Policy(rules) if rules else Policy(BUILT_IN_RULES, admin_is_everything=False)


def forbidden(user_id: str) -> Forbidden:
    """lightspeed-stack's 403 for an endpoint the caller's roles do not grant."""
    return Forbidden(
        "User does not have permission to access this endpoint",
        f"User {user_id} is not authorized to access this endpoint.",
    )


class RoleRules:
    """Roles from a token's claims: lightspeed-stack's `role_rules`, evaluated as it evaluates them
    (an operator compares the list of every value the JSONPath selects)."""

    def __init__(self, rules: tuple[JwtRoleRule, ...]) -> None:
        self._rules = [(rule, parse_jsonpath(rule.jsonpath)) for rule in rules]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def roles(self, claims: dict[str, Any]) -> frozenset[str]:
        granted: set[str] = set()
        for rule, path in self._rules:
            if _holds(rule, [found.value for found in path.find(claims)]):
                granted.update(rule.roles)
        return frozenset(granted)


def _holds(rule: JwtRoleRule, values: list[Any]) -> bool:
    try:
        match rule.operator:
            case JsonPathOperator.EQUALS:
                result = bool(values == rule.value)
            case JsonPathOperator.CONTAINS:
                result = bool(rule.value in values)
            case JsonPathOperator.IN:
                result = bool(values in rule.value)
            case JsonPathOperator.MATCH:
                pattern = _compiled(rule.value)
                result = any(isinstance(item, str) and pattern.search(item) is not None for item in values)
    except TypeError:
        # `in` against a value that is no container (a number in the config): the rule does not hold.
        result = False
    return result != rule.negate


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
