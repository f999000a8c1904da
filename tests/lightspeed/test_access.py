"""Role rules and access rules as lightspeed-stack evaluates and validates them."""

from __future__ import annotations

from typing import Any

import pytest

from lightspeed.access import Policy, RoleRules, policy_for
from lightspeed_common.config import config_from_mapping
from lightspeed_common.config_auth import AccessRule, Action, JwtRoleRule
from lightspeed_common.errors import ConfigError

CLAIMS = {
    "sub": "u-1",
    "email": "ada@example.com",
    "groups": ["staff", "ops"],
    "realm_access": {"roles": ["lightspeed-admin", "offline_access"]},
    "org": {"id": 42},
}


def rule(**fields: Any) -> JwtRoleRule:
    return JwtRoleRule.model_validate({"roles": ["granted"], **fields})


@pytest.mark.parametrize(
    ("fields", "holds"),
    [
        # The operator sees the list of every value the path selects.
        ({"jsonpath": "$.groups[*]", "operator": "contains", "value": "ops"}, True),
        ({"jsonpath": "$.groups[*]", "operator": "contains", "value": "dev"}, False),
        ({"jsonpath": "$.groups", "operator": "equals", "value": [["staff", "ops"]]}, True),
        ({"jsonpath": "$.groups", "operator": "equals", "value": ["staff", "ops"]}, False),
        ({"jsonpath": "$.org.id", "operator": "in", "value": [[41], [42]]}, True),
        ({"jsonpath": "$.org.id", "operator": "in", "value": [[7]]}, False),
        ({"jsonpath": "$.realm_access.roles[*]", "operator": "match", "value": "^lightspeed-"}, True),
        ({"jsonpath": "$.email", "operator": "match", "value": "@example\\.org$"}, False),
        ({"jsonpath": "$.email", "operator": "match", "value": "@example\\.org$", "negate": True}, True),
        ({"jsonpath": "$.missing", "operator": "contains", "value": "x", "negate": True}, True),
        ({"jsonpath": "$.org.id", "operator": "in", "value": 42}, False),  # no container: does not hold
    ],
)
def test_role_rules_hold_as_in_lightspeed_stack(fields: dict[str, Any], holds: bool) -> None:
    assert RoleRules((rule(**fields),)).roles(CLAIMS) == (frozenset({"granted"}) if holds else frozenset())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"jsonpath": "$.a[", "operator": "equals", "value": 1}, "Invalid JSONPath expression: $.a["),
        ({"jsonpath": "$.a", "operator": "equals", "value": 1, "roles": []}, "At least one role must be specified"),
        ({"jsonpath": "$.a", "operator": "equals", "value": 1, "roles": ["x", "x"]}, "Roles must be unique"),
        ({"jsonpath": "$.a", "operator": "equals", "value": 1, "roles": ["*"]}, "The wildcard '*' role is not allowed"),
        ({"jsonpath": "$.a", "operator": "match", "value": 3}, "MATCH operator requires a string pattern, int"),
        ({"jsonpath": "$.a", "operator": "match", "value": "("}, "Invalid regex pattern for MATCH operator: ("),
        (
            {"jsonpath": "$.a", "operator": "greater", "value": 1},
            "Input should be 'equals', 'contains', 'in' or 'match'",
        ),
    ],
)
def test_bad_role_rules_are_named(fields: dict[str, Any], message: str) -> None:
    auth = {"module": "jwk-token", "jwk_config": {"url": "https://idp.example/jwks", "jwt_configuration": {}}}
    auth["jwk_config"]["jwt_configuration"] = {"role_rules": [{"roles": ["r"], **fields}]}  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"authentication": auth})
    assert "authentication.jwk_config.jwt_configuration.role_rules.0" in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"authentication": {"module": "jwk-token"}}, "JWK configuration must be specified when using JWK token"),
        (
            {"authorization": {"access_rules": [{"role": "r", "actions": ["admin", "query"]}]}},
            "Access rule with 'admin' action cannot have other actions",
        ),
        (
            {"authorization": {"access_rules": [{"role": "r", "actions": ["fly"]}]}},
            "authorization.access_rules.0.actions.0",
        ),
        (
            {"authentication": {"module": "jwk-token", "jwk_config": {"url": "x", "algorithms": ["HS256"]}}},
            "authentication.jwk_config.url",
        ),
        (
            {"authentication": {"module": "jwk-token", "jwk_config": {"url": "https://i/j", "algorithms": ["HS256"]}}},
            "authentication.jwk_config.algorithms.0",
        ),
    ],
)
def test_bad_authorization_sections_are_named(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(section)
    assert message in str(caught.value)


def test_the_admin_action_is_every_action_and_everyone_has_the_star_role() -> None:
    policy = Policy(
        [
            AccessRule(role="*", actions=(Action.INFO,)),
            AccessRule(role="viewer", actions=(Action.LIST_CONVERSATIONS,)),
            AccessRule(role="root", actions=(Action.ADMIN,)),
        ]
    )
    assert policy.actions(frozenset()) == {Action.INFO}
    assert policy.actions(frozenset({"viewer"})) == {Action.INFO, Action.LIST_CONVERSATIONS}
    assert policy.actions(frozenset({"root"})) == frozenset(Action)


def test_the_built_in_policy_keeps_conversations_with_their_owners() -> None:
    admin = policy_for(()).actions(frozenset({"admin"}))
    user = policy_for(()).actions(frozenset({"user"}))
    assert Action.READ_OTHERS_CONVERSATIONS in admin
    assert Action.LIST_OTHERS_CONVERSATIONS not in admin
    assert Action.QUERY_OTHERS_CONVERSATIONS not in admin
    assert Action.GET_CONFIG in admin
    assert Action.GET_CONFIG not in user
    assert Action.MODEL_OVERRIDE in user
