"""Exchange names are compared nowhere but in their declarations (issue 13, item 2).

Which exchange does what is `kirby_core.exchanges.registry`'s to say: an `==`, `!=`, `in` or
`not in` with a declared exchange's name as a literal anywhere in the apps (outside the
exchange modules, the simulator and migrations) re-declares a fact and fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

from kirby_core.exchanges.registry import EXCHANGES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kirby_core", "kirby_api", "kirby_stream", "kirby_pipelines", "kirby_cli")
EXEMPT = ("kirby_core/exchanges/", "/migrations/")
NAMES = set(EXCHANGES)
COMPARISONS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def _names_in(node: ast.expr) -> set[str]:
    return {
        n.value.lower()
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.lower() in NAMES
    }


def _offenders() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if any(part in f"/{rel}" for part in EXEMPT):
                continue
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                if isinstance(node, ast.Compare) and any(
                    isinstance(op, COMPARISONS) for op in node.ops
                ):
                    names = set().union(*(_names_in(e) for e in [node.left, *node.comparators]))
                    if names:
                        found.append(f"{rel}:{node.lineno}: {', '.join(sorted(names))}")
                elif isinstance(node, ast.Match):
                    for case in node.cases:
                        if _names_in_pattern(case.pattern):
                            found.append(f"{rel}:{case.pattern.lineno}: match case")
    return found


def _names_in_pattern(pattern: ast.pattern) -> bool:
    return any(isinstance(n, ast.MatchValue) and _names_in(n.value) for n in ast.walk(pattern))


def test_no_exchange_name_comparisons_outside_the_declarations() -> None:
    assert _offenders() == []


def test_the_check_sees_a_comparison(tmp_path: Path) -> None:
    tree = ast.parse('if exchange != "hyperliquid":\n    pass\nok = x in ("Binance", "y")\n')
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert [_names_in(c.comparators[0]) for c in compares] == [{"hyperliquid"}, {"binance"}]
