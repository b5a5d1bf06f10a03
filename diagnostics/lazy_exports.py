"""A package's public names, imported from their modules on first use.

`python -m extractor --help` should not wait for torch and transformers: a
package whose `__init__` imports everything makes every command, help included,
pay for the heaviest one (6.5 s). The rule: the package lists each public name
with the module that defines it, and the module is imported when the name is
first read (PEP 562 `__getattr__`), so `from extractor import graft` keeps working.

A convenience method of a public class that belongs to a higher layer (`Report.open_in_netron`,
the Netron view's) is listed the same way, as `"Report.open_in_netron": "netron_view"`: the
class's own module (the table's "Report") stays free of the layer above, and the method's
module is imported on its first call.

One wrinkle the module class below handles: where a function shares the name
of its module or room (the function `graft` in the room `extractor.graft`), importing
the module would bind the package attribute to the module, hiding the function that
an eager `from .graft import graft` used to leave there.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Mapping


def export_lazily(package: str, where: Mapping[str, str]) -> None:
    """Make `package`'s names in `where` (name -> module, relative) load on first use; a
    "Class.method" name attaches the module's function of that name to the class."""
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module.__dict__["_lazy_where"] = {k: v for k, v in where.items() if "." not in k}
    for name, where_defined in where.items():
        if "." in name:
            holder, method = name.split(".")
            cls = getattr(importlib.import_module(f".{where[holder]}", package), holder)
            setattr(cls, method, _LazyMethod(f"{package}.{where_defined}", method))


class _LazyMethod:
    """A method whose function (`module.name`, taking the instance first) loads on first use."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __get__(self, instance: object, owner: type | None = None) -> object:
        function = getattr(importlib.import_module(self.module), self.name)
        return function if instance is None else types.MethodType(function, instance)


class _LazyPackage(types.ModuleType):
    def __getattr__(self, name: str) -> object:
        where = self.__dict__["_lazy_where"]
        if name not in where:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{where[name]}", self.__name__), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: object) -> None:
        # The import system binds a loaded submodule on its package; a public name of
        # the same name (a function `graft` in module `graft`) stays what the package offers.
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_where", {}) \
                and value.__name__ == f"{self.__name__}.{name}":
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.__dict__["_lazy_where"]})
