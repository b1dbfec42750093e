"""`thinkgate calibrate <command> ...` (also `python -m calibrate ...`).

Subcommands live in a registry: name -> ("module" or "module:attr", help).
The target has `configure(parser: argparse.ArgumentParser) -> None` and
`run(args: argparse.Namespace) -> int`; it is imported only when its command
runs, so heavy imports stay out of the others. Adding a command is one line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("calibrate.commands:convert", "RouteLLM CSVs and other tables -> outcome JSONL"),
    "train": ("calibrate.commands:train", "fit the difficulty classifier and write an artifact"),
    "threshold": ("calibrate.commands:threshold", "choose the routing threshold on held-out scores"),
    "evaluate": ("calibrate.commands:evaluate", "out-of-fold evaluation (APGR, CPT, AUROC, ECE) of the procedure"),
    "report": ("calibrate.commands:report", "a markdown/HTML summary of an artifact"),
    "export-onnx": ("calibrate.commands:export_onnx", "export the int8 ONNX embedder into the cache now"),
    "selfref": ("calibrate.selfref", "calibrate the Self-Ref escalation threshold"),
    "collect": ("calibrate.collect", "run prompts through the configured models, grade them -> outcome JSONL"),
    "joint": ("calibrate.joint", "fit the joint classifier + Self-Ref policy from outcomes with fast_confidence"),
    "prior": ("calibrate.commands.prior:prior", "the pair-agnostic difficulty prior: corpus, pair, fit, loso"),
}


def register(name: str, target: str, help: str) -> None:
    """For plugins registering at import time (the table above is preferred)."""
    COMMANDS[name] = (target, help)


def _load(target: str) -> Any:
    mod, _, attr = target.partition(":")
    obj: Any = importlib.import_module(mod)
    return getattr(obj, attr) if attr else obj


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: thinkgate calibrate <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help}" for name, (_, help) in COMMANDS.items()]
    lines += ["", "`thinkgate calibrate <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "thinkgate calibrate") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"{prog}: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, help = COMMANDS[name]
    command = _load(target)
    parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=help)
    command.configure(parser)
    args = parser.parse_args(rest)
    try:
        return int(command.run(args) or 0)
    except (ValueError, OSError) as e:  # our errors are ValueErrors with a message
        print(f"{prog} {name}: error: {e}", file=sys.stderr)
        return 1
