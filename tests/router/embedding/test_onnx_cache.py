"""The ONNX export cache: unused exports from earlier installs are pruned,
exports in use (by this install or another one side by side) are kept."""

import os
import time

from router.embedding.encoders import prune_stale_exports


def _export_dir(root, name, age_s, marker=True):
    d = root / f"all-MiniLM-L6-v2-{name}"
    d.mkdir()
    (d / "model-int8.onnx").write_bytes(b"x")
    then = time.time() - age_s
    if marker:
        (d / ".used").touch()
        os.utime(d / ".used", (then, then))
    os.utime(d, (then, then))
    return d


def test_prunes_only_exports_unused_for_two_weeks(tmp_path):
    current = _export_dir(tmp_path, "current", 30 * 86400)  # never pruned, however old
    old = _export_dir(tmp_path, "old", 20 * 86400)
    old_unmarked = _export_dir(tmp_path, "older", 40 * 86400, marker=False)
    in_use = _export_dir(tmp_path, "other-checkout", 3600)
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()
    os.utime(unrelated, (0, 0))

    removed = prune_stale_exports(current)

    assert sorted(removed) == sorted([old, old_unmarked])
    assert current.exists() and in_use.exists() and unrelated.exists()
    assert not old.exists() and not old_unmarked.exists()
