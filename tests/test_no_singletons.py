"""No module-level singletons in the engine: the composition root (``engine.Engine``) builds every
long-lived object from the config and passes it in, so two engines in one process (the tests run many)
share nothing but read-only tables, loggers and the one pure memo listed in ``MEMOS``.

Checked on the source with ``ast``: a module may bind, at import time, only constants built by the
constructors in ``IMMUTABLE_CALLS`` or container literals that nothing in the module ever writes to;
no function rebinds a module name (``global``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "appliance").rglob("*.py"))

# What a module may call at import time: each returns a value nobody mutates, or a logger.
IMMUTABLE_CALLS = frozenset(
    {
        "frozenset",
        "tuple",
        "re.compile",
        "logging.getLogger",
        "datetime.timedelta",
        "ipaddress.ip_network",
        "ipaddress.IPv4Address",
        "ipaddress.IPv6Address",
        "ipaddress.IPv4Network",
        "ipaddress.IPv6Network",
        "TypeVar",
        "ParamSpec",
        "Path",
        "Identity",  # access/identities.py: a frozen dataclass (the anonymous identity)
    }
)
# Module-level containers written after import, each with the reason it is not engine state.
MEMOS = {
    # Decoders compiled per protocol type: a pure function of the type, the same for every engine and
    # client in the process, keyed by the finite set of protocol records.
    ("appliance/protocol/codec.py", "_DECODERS"),
}
_MUTATORS = frozenset("append extend insert update setdefault pop popitem clear add discard remove".split())


def _where(path: Path, node: ast.AST, root: Path) -> str:
    return f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"


def _module_bindings(tree: ast.Module) -> Iterator[tuple[str, ast.expr, ast.stmt]]:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value, node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            yield node.target.id, node.value, node


def _written_names(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """Names whose object some statement of the module changes in place."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                    yield target.value.id, node
                if isinstance(node, ast.AugAssign) and isinstance(target, ast.Name):
                    yield target.id, node
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MUTATORS
            and isinstance(node.func.value, ast.Name)
        ):
            yield node.func.value.id, node


def _offences(path: Path, root: Path = ROOT) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    relative = str(path.relative_to(root))
    containers: dict[str, ast.stmt] = {}
    for name, value, node in _module_bindings(tree):
        if isinstance(value, ast.Call):
            called = ast.unparse(value.func)
            if called not in IMMUTABLE_CALLS and not called.endswith(".join"):
                yield f"{_where(path, node, root)}: {name} = {called}(...) builds an object at import time"
        elif isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
            containers[name] = node
    for name, node in _written_names(tree):
        if name in containers and (relative, name) not in MEMOS:
            bound = _where(path, containers[name], root)
            yield f"{_where(path, node, root)}: writes the module-level {name} (bound at {bound})"
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            yield f"{_where(path, node, root)}: global {', '.join(node.names)}"


def test_modules_hold_no_state_of_their_own() -> None:
    assert len(SOURCES) > 90
    offences = [offence for path in SOURCES for offence in _offences(path)]
    assert not offences, "module-level state (build it in the engine and pass it in):\n" + "\n".join(offences)


def test_the_check_sees_a_registry_filled_at_run_time(tmp_path: Path) -> None:
    # The tree passes; this shows the check is not blind to the shapes it forbids.
    source = tmp_path / "inflight.py"
    source.write_text(
        "import asyncio\n"
        "_INFLIGHT: dict[str, int] = {}\n"
        "_LOCK = asyncio.Lock()\n"
        "def start(key: str) -> None:\n"
        "    _INFLIGHT[key] = 1\n"
        "def reset() -> None:\n"
        "    global _LOCK\n"
    )
    assert list(_offences(source, tmp_path)) == [
        "inflight.py:3: _LOCK = asyncio.Lock(...) builds an object at import time",
        "inflight.py:5: writes the module-level _INFLIGHT (bound at inflight.py:2)",
        "inflight.py:7: global _LOCK",
    ]
