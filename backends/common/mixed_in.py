"""Put a mixin in front of a dask-gateway backend class, whichever backend facility.yaml picked."""

from __future__ import annotations

from traitlets.utils.importstring import import_item


def mixed_in(mixin: type, backend_class: str | type) -> type:
    """`backend_class` (a class or its import path) with `mixin` in front, under the same name and
    module, so `c.<BackendClass>.<trait>` configuration still applies; unchanged if it has it already."""
    base = import_item(backend_class) if isinstance(backend_class, str) else backend_class
    if issubclass(base, mixin):
        return base
    return type(base.__name__, (mixin, base), {"__module__": base.__module__, "__doc__": base.__doc__})
