"""A tiny, safe expression language for cross-column checks and row filters.

``end >= start``, ``amount > 0 and currency in ['EUR', 'USD']``, ``abs(a - b) <= 0.01 * total``,
``col("unit price") * qty == total``: Python syntax, parsed with :mod:`ast` and translated to a
Polars expression. Nothing is evaluated by Python itself, so a config cannot run code.
"""

from __future__ import annotations

import ast
import datetime as dt
import operator
from typing import Any, Callable, Sequence

import polars as pl

from ..errors import ConfigError

__all__ = ["parse_expr"]

_ALLOWED = ("column names, numbers, 'strings', True/False/None, + - * / % **, comparisons, "
            "and/or/not, x in [...], and the functions col, abs, len, lower, upper, is_null, "
            "not_null, date")

_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow,
}
_CMP: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def parse_expr(text: str, columns: Sequence[str], *, where: str) -> tuple[pl.Expr, list[str]]:
    """The Polars expression for ``text`` and the columns it reads.

    ``where`` (e.g. ``quality.checks[0]``) starts every error message.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: cannot parse {text!r} ({exc.msg}); allowed: {_ALLOWED}") from None
    builder = _Builder(list(columns), where, text)
    expr = builder.visit(tree.body)
    if not isinstance(expr, pl.Expr):
        raise ConfigError(f"{where}: {text!r} names no column; write a comparison such as 'end >= start'")
    return expr, builder.used


class _Builder:
    def __init__(self, columns: list[str], where: str, text: str) -> None:
        self.columns, self.where, self.text = columns, where, text
        self.used: list[str] = []

    def fail(self, what: str) -> ConfigError:
        return ConfigError(f"{self.where}: {what} in {self.text!r} is not supported; allowed: {_ALLOWED}")

    def column(self, name: str) -> pl.Expr:
        if name not in self.columns:
            listed = ", ".join(self.columns[:40])
            raise ConfigError(f"{self.where}: column '{name}' in {self.text!r} is not in the data; "
                              f"available columns: {listed}")
        if name not in self.used:
            self.used.append(name)
        return pl.col(name)

    def visit(self, node: ast.AST) -> Any:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise self.fail(f"'{ast.unparse(node)}' ({type(node).__name__})")
        return method(node)

    def visit_Name(self, node: ast.Name) -> pl.Expr:
        return self.column(node.id)

    def visit_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise self.fail(f"constant {node.value!r}")
        return node.value

    def visit_List(self, node: ast.List | ast.Tuple | ast.Set) -> list[Any]:
        values = [self.visit(e) for e in node.elts]
        if any(isinstance(v, pl.Expr) for v in values):
            raise self.fail("a list holding columns")
        return values

    visit_Tuple = visit_List
    visit_Set = visit_List

    def visit_BoolOp(self, node: ast.BoolOp) -> pl.Expr:
        parts = [_as_expr(self.visit(v)) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return ~_as_expr(operand)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        raise self.fail("operator '~'")

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        fn = _BIN.get(type(node.op))
        if fn is None:
            raise self.fail(f"operator {type(node.op).__name__}")
        left, right = self.visit(node.left), self.visit(node.right)
        if not isinstance(left, pl.Expr) and not isinstance(right, pl.Expr):
            left = pl.lit(left)
        return fn(left, right)

    def visit_Compare(self, node: ast.Compare) -> pl.Expr:
        parts: list[pl.Expr] = []
        left = self.visit(node.left)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = self.visit(comp)
            parts.append(self._compare(op, left, right))
            left = right
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out

    def _compare(self, op: ast.cmpop, left: Any, right: Any) -> pl.Expr:
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, list):
                raise self.fail("'in' without a [list] on its right")
            test = _as_expr(left).is_in(right)
            return ~test if isinstance(op, ast.NotIn) else test
        if isinstance(op, (ast.Is, ast.IsNot)):
            if right is not None:
                raise self.fail("'is' with something other than None")
            test = _as_expr(left).is_null()
            return ~test if isinstance(op, ast.IsNot) else test
        fn = _CMP[type(op)]
        if not isinstance(left, pl.Expr):
            left = pl.lit(left)
        return fn(left, right)

    def visit_Call(self, node: ast.Call) -> pl.Expr | dt.datetime:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name is None or node.keywords or len(node.args) != 1:
            raise self.fail(f"call '{ast.unparse(node)}' (one positional argument expected)")
        if name == "col":
            arg = node.args[0]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise self.fail("col() without a quoted column name")
            return self.column(arg.value)
        if name == "date":
            arg = node.args[0]
            try:
                return dt.datetime.fromisoformat(str(getattr(arg, "value", "")))
            except ValueError:
                raise self.fail(f"date({ast.unparse(arg)}) (use an ISO date 'YYYY-MM-DD')") from None
        x = _as_expr(self.visit(node.args[0]))
        funcs: dict[str, Callable[[pl.Expr], pl.Expr]] = {
            "abs": lambda e: e.abs(), "len": lambda e: e.str.len_chars(),
            "lower": lambda e: e.str.to_lowercase(), "upper": lambda e: e.str.to_uppercase(),
            "is_null": lambda e: e.is_null(), "not_null": lambda e: e.is_not_null(),
        }
        if name not in funcs:
            raise self.fail(f"function '{name}'")
        return funcs[name](x)


def _as_expr(value: Any) -> pl.Expr:
    return value if isinstance(value, pl.Expr) else pl.lit(value)
