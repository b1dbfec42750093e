"""The calibrate subcommands (registered in calibrate/cli.py). Each is an
object with configure(parser) and run(args) -> exit code. Progress goes to
stderr; results to stdout.

One module per command group: data.py (`convert`, and the outcome loading and
featurising the others share), evaluation.py (`evaluate`), training.py
(`train`), artifacts.py (`threshold`, `report`, `export-onnx`); common.py holds
the argument groups and output helpers. This face re-exports the commands and
the helpers other modules import, so `calibrate.commands:NAME` targets stay as
they were. Heavy imports (torch, onnxruntime, sklearn) stay inside the run
functions."""

from __future__ import annotations

from calibrate.commands.artifacts import export_onnx, report, threshold
from calibrate.commands.data import convert, featurise, load_outcomes
from calibrate.commands.evaluation import evaluate, format_summary
from calibrate.commands.training import train

__all__ = ["convert", "evaluate", "export_onnx", "featurise", "format_summary", "load_outcomes", "report", "threshold", "train"]
