"""Symbolic dims for shape propagation: a monomial `Expr`, a `Dim` that may be unknown.

A dim is `coef * prod(symbol ** power)` (`2`, `batch`, `12*batch*sequence`) or unknown;
a literal dim remembers every `Origin` it was born at, and equal literals merge them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Expr:
    """coef * prod(symbol ** power): enough algebra for shapes."""

    coef: Fraction
    powers: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def of(value: int | str) -> Expr:
        if isinstance(value, str):
            return Expr(Fraction(1), ((value, 1),))
        return Expr(Fraction(value))

    @property
    def literal(self) -> int | None:
        if self.powers or self.coef.denominator != 1:
            return None
        return int(self.coef)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.powers)

    @property
    def single(self) -> str | None:
        """The symbol's name when the expr is exactly one symbol (`sequence`), else None."""
        if self.coef == 1 and len(self.powers) == 1 and self.powers[0][1] == 1:
            return self.powers[0][0]
        return None

    @property
    def valid(self) -> bool:
        """A possible dim: a positive integer coefficient and no negative powers."""
        return self.coef.denominator == 1 and self.coef > 0 and all(p > 0 for _, p in self.powers)

    def __mul__(self, other: Expr) -> Expr:
        powers = dict(self.powers)
        for name, power in other.powers:
            powers[name] = powers.get(name, 0) + power
        return Expr(self.coef * other.coef, tuple(sorted((n, p) for n, p in powers.items() if p)))

    def __truediv__(self, other: Expr) -> Expr:
        inverse = Expr(1 / other.coef, tuple((n, -p) for n, p in other.powers))
        return self * inverse

    def __str__(self) -> str:
        parts = [] if self.coef == 1 and self.powers else [str(self.coef)]
        parts += [name if power == 1 else f"{name}^{power}" for name, power in self.powers]
        return "*".join(parts)


ONE = Expr(Fraction(1))


@dataclass(frozen=True)
class Origin:
    """Where a literal dim or value was born: a constant tensor, or a node's shape-like input."""

    node: str  # the node that reads the constant or the shape-like input
    op_type: str
    input_index: int
    position: int  # the axis of the constant, or the element of the shape input
    tensor: str  # the constant (or shape input) tensor's name
    folded: bool  # True: a constant folded at export; False: produced by `node` from literals
    part: str = "value"  # "value": an element of `tensor`; "dim": an axis of its shape


@dataclass(frozen=True)
class Dim:
    expr: Expr | None
    origins: tuple[Origin, ...] = ()  # every place this literal was born (merged when equal)

    @property
    def literal(self) -> int | None:
        return None if self.expr is None else self.expr.literal

    @property
    def symbolic(self) -> bool:
        return self.expr is not None and bool(self.expr.powers)

    def __str__(self) -> str:
        return "?" if self.expr is None else str(self.expr)


UNKNOWN = Dim(None)
Shape = list[Dim] | None  # None: rank unknown


def lit(value: int, origin: Origin | None = None) -> Dim:
    return Dim(Expr.of(value), (origin,) if origin else ())


_MAX_ORIGINS = 32


def merge(dims: list[Dim]) -> Dim:
    """Equal literal dims become one that remembers all their origins."""
    if len(dims) == 1:
        return dims[0]
    origins = tuple(dict.fromkeys(o for d in dims for o in d.origins))[:_MAX_ORIGINS]
    return Dim(dims[0].expr, origins)
