"""The engine's layering: each package imports only the packages below it, and no module imports itself
back through another (no import cycles).

A *unit* is a subpackage of ``appliance`` (``front``, ``registry``, ...) or a root module (``engine``,
``events``, ...; ``appliance`` is the package's own ``__init__``).  ``MAY_IMPORT`` says which units each
unit may import; imports inside a unit are free.  Every import counts: module level, inside functions
and under ``TYPE_CHECKING`` (a type-only import is still a dependency a reader has to follow).  The
package docstrings say the same in words; this table is the authority.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "appliance"

# Root modules everything may use: they import nothing of the engine but each other's basics.
BASICS = frozenset({"appliance", "errors", "digests", "tasks", "memory", "logsafe"})
# The vocabulary shared by all layers: OCI routes and media types, request events and counters.
VOCABULARY = BASICS | {"oci", "events", "stats"}
# Below the registry API: the stores and the upstream client, siblings that never import each other.
STORAGE_AND_UPSTREAM = VOCABULARY | {"config", "cache", "upstream"}
# Everything the proxy's request path may use (front/ serves requests through registry/).
# Client identities and access decisions: pure rules over the config, used by the request path.
ACCESS = frozenset({"access"})
REQUEST_PATH = STORAGE_AND_UPSTREAM | ACCESS | {"registry", "metrics", "accesslog"}

MAY_IMPORT: dict[str, frozenset[str]] = {
    "appliance": frozenset(),
    "errors": frozenset(),
    "digests": frozenset(),
    "tasks": frozenset(),
    "memory": frozenset(),
    "logsafe": frozenset(),
    "protocol": frozenset(),  # the wire schema: the dashboard loads it alone (tests/tui/test_wall.py)
    "oci": BASICS,
    "events": BASICS | {"oci"},
    "stats": BASICS | {"oci", "events"},
    # protocol (a stdlib-only leaf): the access input checks and time parsing the CLI and dashboard
    # share (protocol/access_input), and the config file's time spelling (protocol/units_text).
    "config": BASICS | {"protocol"},
    "accesslog": VOCABULARY | {"config"},
    "cache": VOCABULARY | {"config"},
    "upstream": VOCABULARY | {"config"},
    # The shared S3 tier (issue 18): implements cache's interfaces over a bucket and reports in
    # protocol's FleetStatus; cache never imports it (the engine wires the tier in).
    "fleet": VOCABULARY | {"config", "cache", "protocol"},
    # protocol/access_input makes the password hashes and tokens that access/ checks.
    "access": VOCABULARY | {"config", "protocol"},
    # protocol (a stdlib-only leaf): the fleet's numbers arrive as its FleetStatus record (issue 18),
    # so metrics need not import the fleet tier to export them.
    "metrics": STORAGE_AND_UPSTREAM | {"protocol"},
    "registry": STORAGE_AND_UPSTREAM | ACCESS,
    "front": REQUEST_PATH,
    # The engine wires the fleet tier under the cache and its endpoint into the front door.
    "engine": REQUEST_PATH | {"front", "fleet"},
    # The control plane acts on a running engine and answers in the protocol; the proxy never calls it.
    "control": STORAGE_AND_UPSTREAM | ACCESS | {"engine", "protocol", "fleet"},
    "runner": REQUEST_PATH | {"front", "engine", "control", "protocol", "fleet"},
    "cli": REQUEST_PATH | {"front", "engine", "control", "protocol", "runner", "fleet"},
    "__main__": frozenset({"cli"}),
}


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (the package's __init__ for a name it exports)
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def _module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _module_files()


def _known(name: str) -> str:
    """The module ``name`` loads: itself, or the nearest enclosing package for a name inside one."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str, path: Path) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "appliance":
                    yield Import(module, _known(alias.name), where)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            if origin.split(".")[0] != "appliance":
                continue
            for alias in node.names:
                # ``from appliance.registry import api`` loads the module, ``... import Thing`` the package.
                submodule = f"{origin}.{alias.name}"
                yield Import(module, submodule if submodule in MODULES else _known(origin), where)


# One entry per (importer, imported, line): ``from x import a, b`` is one import of x.
IMPORTS = list(dict.fromkeys(found for module, path in MODULES.items() for found in _imports(module, path)))


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_and_root_module_has_a_place_in_the_layering() -> None:
    units = {unit(module) for module in MODULES}
    assert {"engine", "front", "registry", "upstream", "cache", "config", "protocol"} <= units
    unplaced = sorted(f"appliance/{name}: no row in MAY_IMPORT" for name in units - MAY_IMPORT.keys())
    assert not unplaced, "\n".join(unplaced)
    stale = sorted(MAY_IMPORT.keys() - units)
    assert not stale, f"MAY_IMPORT names units that no longer exist: {stale}"


def _listed(units: frozenset[str]) -> str:
    return ", ".join(sorted(units)) or "nothing of the engine"


def test_each_package_imports_only_the_packages_below_it() -> None:
    assert len(IMPORTS) > 300  # the walk did find the engine's imports
    offenders = [
        f"{found} ({unit(found.source)} may import only: {_listed(MAY_IMPORT[unit(found.source)])})"
        for found in IMPORTS
        if unit(found.source) in MAY_IMPORT
        and unit(found.target) != unit(found.source)
        and unit(found.target) not in MAY_IMPORT[unit(found.source)]
    ]
    assert not offenders, "imports against the layering:\n" + "\n".join(offenders)


def _cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    edges: dict[str, dict[str, Import]] = {}
    for found in IMPORTS:
        if found.target != found.source:
            edges.setdefault(found.source, {}).setdefault(found.target, found)
    cycles = _cycles(edges)
    lines = []
    for members in cycles:
        lines.append("cycle between " + ", ".join(members) + ":")
        lines.extend(
            f"  {edges[source][target]}"
            for source in members
            for target in sorted(edges.get(source, {}))
            if target in members
        )
    assert not cycles, "\n".join(lines)


def test_the_cycle_finder_reports_a_cycle_it_is_given() -> None:
    # The checks above pass on a clean tree; this shows the finder is not blind.
    a_b = Import("a", "b", "a.py:1")
    b_c = Import("b", "c", "b.py:1")
    c_a = Import("c", "a", "c.py:1")
    assert _cycles({"a": {"b": a_b}, "b": {"c": b_c}, "c": {"a": c_a}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": a_b}, "b": {"c": b_c}}) == []
