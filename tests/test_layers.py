"""The dependency direction of router/__init__.py, checked on every import in the
source (function-level imports included), so the layout cannot rot silently."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS: dict[str, int] = {
    "router.config": 0, "router.settings": 0, "router.errors": 0, "router.types": 0,
    "policies": 1,
    "router.embedding": 2, "router.cache": 2, "router.upstreams": 2, "router.access": 2, "router.decisions": 2,
    "router.learning": 2,
    "router.tracing": 2,
    "router.deer": 3,
    "router.pipeline": 4,
    "router.api": 5, "router.dashboard": 5,
    "router.app": 6, "router.build": 6,
    "router.cli": 7,
}  # fmt: skip
# calibrate is offline tooling: the layers it may use, and nothing that serves requests
CALIBRATE_MAY_IMPORT = (
    "router.config", "router.settings", "router.errors", "router.types", "policies", "router.embedding",
    "router.upstreams",
    # `calibrate collect` must call the reasoning model as the gateway does (through the DEER
    # driver), or its outcome table grades another model than the one routed to: the model
    # builder only, not the rest of router.deer
    "router.deer.clients",
)  # fmt: skip


def layer_of(module: str) -> str | None:
    best = None
    for name in LAYERS:
        if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from router import errors` names a module: check the module, not the package
            out += [(node.lineno, f"{node.module}.{a.name}" if node.module == "router" else node.module) for a in node.names]
    return out


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        me = module_name(path)
        for lineno, target in imports(path):
            if not target.startswith(("router", "policies", "calibrate")) or target == "router":
                continue
            where = f"{path.relative_to(ROOT)}:{lineno} imports {target}"
            if package == "calibrate":
                if not target.startswith("calibrate") and not target.startswith(CALIBRATE_MAY_IMPORT):
                    bad.append(where)
                continue
            mine, theirs = layer_of(me), layer_of(target)
            if theirs is None or target.startswith("calibrate"):
                # cli may hand off to the calibrate command; nothing else in router may
                if not (me == "router.cli" and target.startswith("calibrate")):
                    bad.append(where + " (not in the layer map)")
            elif mine is None:
                bad.append(f"{path.relative_to(ROOT)} is not in the layer map")
            elif LAYERS[theirs] > LAYERS[mine]:
                bad.append(f"{where}: layer {LAYERS[theirs]} above {LAYERS[mine]}")
    return bad


def test_router_and_policies_import_only_downwards():
    assert violations("router") + violations("policies") == []


def test_calibrate_never_imports_the_serving_side():
    assert violations("calibrate") == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    # the check itself must be able to fail: an upstream importing the DEER driver
    bad = tmp_path / "router" / "upstreams"
    bad.mkdir(parents=True)
    (bad / "x.py").write_text("def f():\n    from router.deer.upstream import DeerUpstream\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("router") == ["router/upstreams/x.py:2 imports router.deer.upstream: layer 3 above 2"]


def test_only_assembly_and_the_ground_floor_sit_directly_in_router():
    flat = sorted(p.stem for p in (ROOT / "router").glob("*.py"))
    assert flat == ["__init__", "app", "build", "cli", "config", "errors", "types"]
