"""Math answer equality for the DEER benchmark, the paper's way: a predicted
answer is right when it equals the reference as a number or as a symbolic
expression, not only as a string.

Layers, first match wins:
1. `policies.grading.math_equal`: normalised LaTeX strings, numbers (fractions,
   percentages, thousands separators), `x = 5` against `5`, tuples by element;
2. symbolic (when sympy is installed, as it is beside torch): both sides turned
   from LaTeX into sympy expressions by a small converter (`\\frac`, `\\sqrt`,
   `\\pi`, `^`, `\\cdot`, implicit products, `\\infty`) and compared by value: a
   constant numerically, an expression at random points of its variables.
   Tuples and intervals compare element by element, brackets included.

`grader()` says which layers are in use; the benchmark records it.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

from policies.grading import math_equal as string_or_numeric_equal

try:  # optional: torch brings it; without it the grader is string/numeric only
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    _TRANSFORMS = (*standard_transformations, implicit_multiplication_application, convert_xor)
except ImportError:  # pragma: no cover - exercised only where sympy is missing
    sympy = None  # type: ignore[assignment]


def grader() -> str:
    return "string+numeric+sympy" if sympy is not None else "string+numeric"


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or of a trailing `\\boxed x`."""
    i = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if i < 0:
        return None
    j = text.find("{", i)
    head = text[i:j].strip() if j >= 0 else ""
    if j < 0 or head not in ("\\boxed", "\\fbox"):
        m = re.match(r"\\boxed\s+([^\s$]+)", text[i:])
        return m.group(1) if m else None
    depth = 0
    for k in range(j, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k]
    return None


def equal(pred: str | None, gold: str) -> bool:
    if pred is None:
        return False
    po, pp, pc = _parts(pred)
    go, gp, gc = _parts(gold)
    if len(pp) > 1 and len(gp) > 1 and (po, pc) != (go, gc):
        return False  # intervals: (1, 2) is not [1, 2]
    if string_or_numeric_equal(pred, gold):
        return True
    return sympy is not None and _symbolic_equal(pred, gold)


# -- LaTeX -> sympy -------------------------------------------------------------------


def _group(s: str, i: int) -> tuple[str, int]:
    """The braced group starting at s[i] == "{" (or a single character), and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise ValueError("missing argument")
    if s[i] != "{":
        if s[i] == "\\":
            m = re.match(r"\\[a-zA-Z]+", s[i:])
            if m:
                return m.group(0), i + len(m.group(0))
        return s[i], i + 1
    depth = 0
    for k in range(i, len(s)):
        depth += {"{": 1, "}": -1}.get(s[k], 0)
        if depth == 0:
            return s[i + 1 : k], k + 1
    raise ValueError("unbalanced braces")


def _to_python(s: str) -> str:
    out = ""
    i = 0
    while i < len(s):
        if s.startswith("\\frac", i):
            a, i = _group(s, i + 5)
            b, i = _group(s, i)
            out += f"(({_to_python(a)})/({_to_python(b)}))"
        elif s.startswith("\\sqrt", i):
            i += 5
            root = None
            if i < len(s) and s[i] == "[":
                k = s.index("]", i)
                root, i = s[i + 1 : k], k + 1
            a, i = _group(s, i)
            out += f"sqrt({_to_python(a)})" if root is None else f"(({_to_python(a)})**(1/({_to_python(root)})))"
        elif s[i] == "\\":
            m = re.match(r"\\([a-zA-Z]+)", s[i:])
            name = m.group(1) if m else s[i + 1 : i + 2]
            i += 1 + len(name)
            out += {
                "pi": " pi ", "cdot": "*", "times": "*", "div": "/", "infty": " oo ", "infinity": " oo ",
                "sin": " sin", "cos": " cos", "tan": " tan", "log": " log", "ln": " log", "exp": " exp",
            }.get(name, " ")  # fmt: skip
        elif s[i] in "{[":
            out += "("
            i += 1
        elif s[i] in "}]":
            out += ")"
            i += 1
        elif s[i] == "^":
            out += "**"
            i += 1
        else:
            out += s[i]
            i += 1
    return out


def _expr(s: str) -> Any:
    s = s.strip().strip("$").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for junk in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\displaystyle", "^\\circ", "^{\\circ}", "\\%"):
        s = s.replace(junk, "")
    s = re.sub(r"\\text\{[^{}]*\}", "", s)
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    if len(s) > 200:
        raise ValueError("too long to parse safely")
    return parse_expr(_to_python(s), transformations=_TRANSFORMS, evaluate=True)


def _parts(s: str) -> tuple[str, list[str], str]:
    s = s.strip().strip("$")
    s = s.replace("\\left", "").replace("\\right", "")
    opened, closed = s[:1], s[-1:]
    if opened in "([" and closed in ")]" and "," in s:
        inner = s[1:-1]
    else:
        opened = closed = ""
        inner = s
    depth, parts, cur = 0, [], ""
    for ch in inner:
        depth += {"{": 1, "(": 1, "[": 1, "}": -1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return opened, [*parts, cur], closed


def _same_value(a: Any, b: Any) -> bool:
    diff = a - b
    free = sorted(diff.free_symbols, key=str)
    rng = random.Random(0)
    for _ in range(3 if free else 1):
        point = {v: rng.uniform(0.5, 2.5) for v in free}
        x, y = complex(a.evalf(subs=point)), complex(b.evalf(subs=point))
        if not (math.isfinite(abs(x)) and math.isfinite(abs(y))):
            if x != y:
                return False
            continue
        if abs(x - y) > 1e-6 * max(1.0, abs(x), abs(y)):
            return False
    return True


def _symbolic_equal(pred: str, gold: str) -> bool:
    try:
        _, pp, _ = _parts(pred)
        _, gp, _ = _parts(gold)
        if len(pp) != len(gp):
            return False
        return all(_same_value(_expr(p), _expr(g)) for p, g in zip(pp, gp))
    except Exception:  # noqa: BLE001 - a parse or evaluation failure is "not shown equal", never a crash
        return False
