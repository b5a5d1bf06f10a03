"""Symbolic dims for shape propagation: a monomial `Expr`, a `Dim` that may be unknown.

A dim is `coef * prod(atom ** power)` (`2`, `batch`, `12*batch*sequence`) or unknown. An
atom is an input symbol (`sequence`) or a `Derived` size the monomial cannot write (`past +
sequence`, `floor(samples/10) - 1`): an exact sympy expression over the input symbols, in
one canonical form (expanded, factored, floors merged), so two routes to the same size are
equal atoms and the repair builds it from its terms. Products stay monomials, the fast path
the propagation runs on every node; sympy is met only where a sum or a floor is made.
A literal dim remembers every `Origin` it was born at, and equal literals merge them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import sympy


def symbol(name: str) -> sympy.Symbol:
    """The sympy symbol of an input size: a positive integer."""
    return sympy.Symbol(name, integer=True, positive=True)


@dataclass(frozen=True)
class Derived:
    """A size no monomial writes: its exact value over the input symbols (canonical, see
    `from_sympy`), and how many terms and what degree it has written out (for the bounds)."""

    value: sympy.Expr
    text: str = field(compare=False)
    terms: int = field(compare=False)
    degree: int = field(compare=False)

    def __str__(self) -> str:
        return self.text


Atom = str | Derived


def _key(item: tuple[Atom, int]) -> str:
    return str(item[0])


@dataclass(frozen=True)
class Expr:
    """coef * prod(atom ** power): enough algebra for shapes."""

    coef: Fraction
    powers: tuple[tuple[Atom, int], ...] = ()

    @staticmethod
    def of(value: int | Atom) -> Expr:
        if isinstance(value, int):
            return Expr(Fraction(value))
        return Expr(Fraction(1), ((value, 1),))

    @property
    def literal(self) -> int | None:
        if self.powers or self.coef.denominator != 1:
            return None
        return int(self.coef)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The atoms' names (a derived size's is its text, `(past + sequence)`)."""
        return tuple(str(atom) for atom, _ in self.powers)

    @property
    def single(self) -> str | None:
        """The atom's name when the expr is exactly one atom (`sequence`), else None."""
        if self.coef == 1 and len(self.powers) == 1 and self.powers[0][1] == 1:
            return str(self.powers[0][0])
        return None

    @property
    def valid(self) -> bool:
        """A possible dim: a positive integer coefficient and no negative powers."""
        return self.coef.denominator == 1 and self.coef > 0 and all(p > 0 for _, p in self.powers)

    @property
    def terms(self) -> int:
        """At most how many terms the expr has written out: a derived atom's, multiplied."""
        count = 1
        for atom, power in self.powers:
            if isinstance(atom, Derived):
                count *= atom.terms ** abs(power)
        return count

    @property
    def degree(self) -> int:
        """The degree written out: a derived atom's, times its power."""
        return sum((atom.degree if isinstance(atom, Derived) else 1) * abs(power)
                   for atom, power in self.powers)

    @property
    def sympy(self) -> sympy.Expr:
        """The exact value over the input symbols."""
        return _to_sympy(self)

    def __mul__(self, other: Expr) -> Expr:
        powers = dict(self.powers)
        for name, power in other.powers:
            powers[name] = powers.get(name, 0) + power
        return Expr(self.coef * other.coef,
                    tuple(sorted(((n, p) for n, p in powers.items() if p), key=_key)))

    def __truediv__(self, other: Expr) -> Expr:
        inverse = Expr(1 / other.coef, tuple((n, -p) for n, p in other.powers))
        return self * inverse

    def __str__(self) -> str:
        parts = [] if self.coef == 1 and self.powers else [str(self.coef)]
        parts += [str(name) if power == 1 else f"{name}^{power}" for name, power in self.powers]
        return "*".join(parts)


ONE = Expr(Fraction(1))


@lru_cache(maxsize=4096)
def _to_sympy(expr: Expr) -> sympy.Expr:
    value = sympy.Rational(expr.coef.numerator, expr.coef.denominator)
    for atom, power in expr.powers:
        value *= (atom.value if isinstance(atom, Derived) else symbol(atom)) ** power
    return value


def from_sympy(value: sympy.Expr) -> Expr | None:
    """The canonical `Expr` of an exact size: expanded, then factored over the integers, so
    `batch*past + batch*sequence` is `batch*(past + sequence)` however it was reached;
    each factor that is not an input symbol is a `Derived` atom. None: not a size (a
    non-integer power, a symbol that is not an input's)."""
    return _canonical(sympy.expand(value))


@lru_cache(maxsize=4096)
def _canonical(value: sympy.Expr) -> Expr | None:
    if value.is_Rational:
        return Expr(Fraction(int(value.p), int(value.q)))
    coef, rest = sympy.factor(value).as_coeff_Mul()
    if not coef.is_Rational:
        return None
    powers: dict[Atom, int] = {}
    odd: list[Derived] = []
    for factor in sympy.Mul.make_args(rest):
        base, power = factor.as_base_exp()
        if not power.is_Integer:
            base, power = factor, sympy.Integer(1)
        if base.is_Symbol:
            atom: Atom = base.name
        else:
            atom = _derived(base)
            if power % 2:
                odd.append(atom)
        powers[atom] = powers.get(atom, 0) + int(power)
    if coef < 0 and odd:  # a size is positive: turn the first odd factor round instead
        first = min(odd, key=str)
        power = powers.pop(first)
        powers[_derived(sympy.expand(-first.value))] = power
        coef = -coef
    return Expr(Fraction(int(coef.p), int(coef.q)), tuple(sorted(powers.items(), key=_key)))


def _derived(value: sympy.Expr) -> Derived:
    text = _text(value)
    return Derived(value, text if isinstance(value, sympy.floor) else f"({text})",
                   len(sympy.Add.make_args(value)), int(sympy.total_degree(value)))


def floor_div(value: sympy.Expr, divisor: int, ceil: bool = False) -> sympy.Expr:
    """floor(value / divisor) (ceil) of an integer-valued size, in one canonical form: a
    ceil as a floor (`ceil(x/s) = floor((x + s - 1)/s)`), a floor inside merged into it
    (`floor((floor(x/5) - 2)/2) = floor((x - 10)/10)`), the integer part of the constant
    outside (`floor((x + 7)/5) = floor((x + 2)/5) + 1`)."""
    value = sympy.expand(value + (divisor - 1 if ceil else 0))
    inner = [t for t in sympy.Add.make_args(value) if isinstance(t, sympy.floor)]
    rest = value - inner[0] if len(inner) == 1 else None
    if rest is not None and all(t.as_coeff_Mul()[0].is_Integer for t in sympy.Add.make_args(rest)):
        numerator, denominator = sympy.fraction(sympy.together(inner[0].args[0] + rest))
        if denominator.is_Integer:  # floor((floor(z) + c)/d) = floor((z + c)/d), c an integer
            value, divisor = sympy.expand(numerator), divisor * int(denominator)
    constant = value.as_coeff_Add()[0]
    whole = int(constant // divisor) if constant.is_Rational else 0
    rest = sympy.expand(value - whole * divisor)
    return sympy.floor(rest / divisor) + whole


def evaluate(value: sympy.Expr, sizes: dict[str, int]) -> int | None:
    """`value` at `sizes` of the input symbols; None where one has no size or it is not an
    integer there."""
    names = {s.name for s in value.free_symbols}
    if not names <= sizes.keys():
        return None
    result = value.xreplace({symbol(n): sympy.Integer(sizes[n]) for n in names})
    return int(result) if result.is_Integer else None


def _text(value: sympy.Expr) -> str:
    """Readable: sums as `a + b - c + 1` (positive terms first, each sorted), floors as
    `floor((x + 2)/5)`, products as `2*batch*sequence`."""
    if isinstance(value, sympy.floor):
        numerator, denominator = sympy.fraction(sympy.together(value.args[0]))
        top = _text(sympy.expand(numerator))
        if len(sympy.Add.make_args(sympy.expand(numerator))) > 1:
            top = f"({top})"
        return f"floor({top}/{denominator})" if denominator != 1 else f"floor({top})"
    if value.is_Add:
        constant, rest = value.as_coeff_Add()
        plus, minus = [], []
        for term in sympy.Add.make_args(rest):
            coef, body = term.as_coeff_Mul()
            (plus if coef > 0 else minus).append(_product(abs(coef), body))
        text = " + ".join(sorted(plus)) if plus else ""
        text += "".join(f" - {t}" for t in sorted(minus)) if plus else \
            "-" + " - ".join(sorted(minus))
        if constant:
            text += f" + {constant}" if constant > 0 else f" - {-constant}"
        return text
    coef, body = value.as_coeff_Mul()
    return _product(coef, body) if body != 1 else str(coef)


def _product(coef: sympy.Rational, body: sympy.Expr) -> str:
    parts = [] if coef == 1 else [str(coef)]
    for factor in sorted(sympy.Mul.make_args(body), key=str):
        base, power = factor.as_base_exp()
        name = base.name if base.is_Symbol else (
            _text(base) if isinstance(base, sympy.floor) else f"({_text(base)})")
        parts.append(name if power == 1 else f"{name}^{power}")
    return "*".join(parts)


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
