"""An import contract import-linter has no type for: the foundation holds only what daemons share.

`make imports` loads it through `contract_types` in pyproject.toml. A module of
the foundation that fewer than `min_daemons` daemons reach, directly or through
other foundation modules, belongs in the one daemon that uses it (or, used by
none, where its one user lives).
"""

from __future__ import annotations

import importlib.util

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class SharedFoundationContract(Contract):
    """Every module of `foundation` is reached by at least `min_daemons` of `daemons`.

    Configuration: `foundation` (a package), `daemons` (packages),
    `min_daemons` (an integer, default 2). Packages are not counted: their
    `__init__` groups modules (or, like `http/web/`, holds static files).
    """

    type_name = "shared"

    foundation = fields.StringField()
    daemons = fields.ListField(subfield=fields.StringField())
    min_daemons = fields.IntegerField(required=False, default=2)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        foundation = str(self.foundation)
        daemons = [str(d) for d in self.daemons]  # type: ignore[attr-defined]
        minimum = int(self.min_daemons)  # type: ignore[call-overload]
        lonely = {}
        for module in sorted(graph.find_descendants(foundation)):
            if _is_package(module):
                continue
            users = [d for d in daemons if _reaches(graph, d, module)]
            output.verbose_print(verbose, f"{module}: {', '.join(users) or 'no daemon'}")
            if len(users) < minimum:
                lonely[module] = users
        return ContractCheck(kept=not lonely, metadata={"lonely": lonely, "minimum": minimum})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, users in check.metadata["lonely"].items():
            reached = ", ".join(users) or "no daemon"
            minimum = check.metadata["minimum"]
            output.print_error(f"{module} is reached by {reached}; the foundation holds what {minimum} daemons share")
            output.new_line()


def _reaches(graph: ImportGraph, daemon: str, module: str) -> bool:
    return graph.chain_exists(importer=daemon, imported=module, as_packages=True)


def _is_package(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None
