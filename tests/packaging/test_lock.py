"""requirements.lock (and requirements-torch.lock) against pyproject.toml: the lock was
made from the current [project] dependencies (scripts/lock.sh records their digest),
every dependency is pinned at a version its range admits, every pin carries sha256
hashes, and the known-compromised litellm releases are excluded. Change a dependency
without running scripts/lock.sh and these fail."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
COMPROMISED = {"litellm": {"1.82.7", "1.82.8"}}  # published compromised, March 2026


def dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def pins(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes), from a pip requirements file with --hash options."""
    text = path.read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)\s*(.*)$", line)
        assert m, f"{path.name}: not an exact pin: {line[:80]}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", m[3])
        out[canonicalize_name(m[1].split("[")[0])] = (Version(m[2]), hashes)
    return out


def test_the_lock_was_made_from_the_current_dependencies():
    want = hashlib.sha256("\n".join(sorted(dependencies())).encode()).hexdigest()
    recorded = re.search(r"^# pyproject-dependencies-sha256: ([0-9a-f]{64})$", (ROOT / "requirements.lock").read_text(), re.M)
    assert recorded, "requirements.lock has no digest line: regenerate it with scripts/lock.sh"
    assert recorded[1] == want, "pyproject.toml's dependencies changed since the lock was made: run scripts/lock.sh"


def test_every_dependency_is_pinned_with_hashes_at_a_version_its_range_admits():
    locked = pins(ROOT / "requirements.lock")
    torch = pins(ROOT / "requirements-torch.lock")
    assert set(torch) == {"torch"} and "torch" not in locked  # torch is locked on its own (the CPU build)
    for name, (version, hashes) in {**locked, **torch}.items():
        assert hashes, f"{name} has no hash"
        assert version not in {Version(v) for v in COMPROMISED.get(name, ())}, f"{name} {version} is a compromised release"
    for dep in dependencies():
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        version = (torch if name == "torch" else locked).get(name, (None, []))[0]
        assert version is not None, f"{req.name} is not in the lock: run scripts/lock.sh"
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version} is outside {req.specifier}"


def test_the_compromised_releases_are_excluded_where_the_lock_is_made():
    constraints = (ROOT / "deploy" / "lock" / "constraints.txt").read_text()
    for name, versions in COMPROMISED.items():
        line = next(ln for ln in constraints.splitlines() if ln.startswith(name))
        req = Requirement(line)
        assert not any(req.specifier.contains(v) for v in versions), line


def test_the_pin_parser_rejects_a_range(tmp_path):
    # the checks above rely on pins(): it must refuse what is not an exact pin
    bad = tmp_path / "r.txt"
    bad.write_text("httpx>=0.27 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    try:
        pins(bad)
    except AssertionError as e:
        assert "not an exact pin" in str(e)
    else:
        raise AssertionError("a range passed as a pin")
