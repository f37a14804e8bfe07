"""``describe``: a text that changes whenever a subsampler's behaviour can, and is the same in every process,
so cache namespaces split on real changes and are found again by the next run."""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
import types
from typing import Any, FrozenSet

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def describe(subsampler: Any) -> str:
    """JSON of the subsampler: a built-in's config, a partial's function and arguments, a function's code,
    defaults and closure, a bound method's object, an object's fields — sets sorted, no memory addresses."""
    return json.dumps(_plain(subsampler, frozenset()), sort_keys=True)


def _plain(obj: Any, seen: FrozenSet[int]) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (bytes, bytearray)):
        return {"bytes": hashlib.sha256(obj).hexdigest()[:16]}
    if id(obj) in seen:
        return "<recursive>"
    seen = seen | {id(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, seen) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_plain(v, seen) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, dict):
        return {str(k): _plain(v, seen) for k, v in obj.items()}
    if isinstance(obj, types.CodeType):
        return {"code": hashlib.sha256(obj.co_code).hexdigest()[:16], "consts": _plain(obj.co_consts, seen),
                "names": list(obj.co_names)}
    if isinstance(obj, functools.partial):
        return {"partial": _plain(obj.func, seen), "args": _plain(obj.args, seen),
                "keywords": _plain(obj.keywords, seen)}
    if inspect.ismethod(obj):
        return {"method": _plain(obj.__func__, seen), "self": _plain(obj.__self__, seen)}
    if inspect.isfunction(obj):
        return {"function": f"{obj.__module__}.{obj.__qualname__}", "code": _plain(obj.__code__, seen),
                "defaults": _plain(obj.__defaults__, seen), "kwdefaults": _plain(obj.__kwdefaults__, seen),
                "closure": [_plain(_cell(c), seen) for c in obj.__closure__ or ()]}
    if isinstance(obj, (type, types.ModuleType, types.BuiltinFunctionType)):
        return {"name": f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj.__name__)}"}
    config = getattr(obj, "config", None)
    fields = config() if callable(config) and not inspect.isclass(obj) else getattr(obj, "__dict__", None)
    if isinstance(fields, dict):
        return {"object": f"{type(obj).__module__}.{type(obj).__qualname__}", "fields": _plain(fields, seen)}
    return _ADDRESS.sub("", repr(obj))


def _cell(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:   # a cell not yet filled
        return "<empty>"
