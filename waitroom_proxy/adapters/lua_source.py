"""The Lua scripts' text as the store registers it: each script with the preludes it names."""

from __future__ import annotations

import re
from importlib import resources

_PRELUDE_RE = re.compile(r"^-- prelude: ([a-z_]+)$", re.M)


def load_script_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` shipped in this package, with the preludes its header
    names (``-- prelude: bucket`` → ``lua/prelude/bucket.lua``) put right after the header:
    code two scripts share is written once."""
    lua = resources.files("waitroom_proxy.adapters").joinpath("lua")
    source = lua.joinpath(f"{name}.lua").read_text("utf-8")
    preludes = _PRELUDE_RE.findall(source)
    if not preludes:
        return source
    lines = source.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if not line.startswith("--")), len(lines))
    shared = [lua.joinpath("prelude", f"{p}.lua").read_text("utf-8") + "\n" for p in preludes]
    return "".join([*lines[:end], "\n", *shared, *lines[end:]])
