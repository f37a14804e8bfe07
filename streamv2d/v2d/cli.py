"""``streamv2d video2dataset``: video2dataset's command line (python-fire style: ``--url_list=x``,
``--url_list x``, ``--output-format=…``, a bare ``--enable_wandb`` for True, values read as Python literals)."""
from __future__ import annotations

import inspect
import sys
from typing import Any, Dict, List, Optional

from .api import literal, video2dataset

_ARGUMENTS = list(inspect.signature(video2dataset).parameters)


def parse(argv: List[str]) -> Dict[str, Any]:
    """The keyword arguments of a command line; the first bare value is ``url_list``. Unknown flags are an
    error naming them."""
    kwargs: Dict[str, Any] = {}
    positional = iter(_ARGUMENTS)
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            name, has_value, value = token[2:].partition("=")
            name = name.replace("-", "_")
            if name not in _ARGUMENTS:
                raise ValueError(f"unknown argument --{name}; known: {', '.join(_ARGUMENTS)}")
            if not has_value:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    i += 1
                    value = argv[i]
                else:
                    value = "True"
            kwargs[name] = literal(value)
        else:
            name = next(n for n in positional if n not in kwargs)
            kwargs[name] = literal(token)
        i += 1
    if "url_list" not in kwargs:
        raise ValueError("--url_list is required")
    return kwargs


def main(argv: Optional[List[str]] = None) -> int:
    """Run video2dataset's command line; 2 on a wrong argument, 1 when shards could not be completed."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\narguments: " + ", ".join(f"--{n}" for n in _ARGUMENTS))
        return 0
    from ..errors import StreamV2DError

    try:
        kwargs = parse(argv)
        result = video2dataset(**kwargs)
    except (StreamV2DError, ValueError, OSError) as exc:
        print(f"streamv2d video2dataset: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstreamv2d video2dataset: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print("\n".join(result.summary.lines()))
    if result.failed:
        print(f"{len(result.failed)} shard(s) could not be completed ({result.failed[:10]})", file=sys.stderr)
        return 1
    return 0
