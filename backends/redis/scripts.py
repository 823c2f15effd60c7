"""Loads the `.lua` files shipped in `backends/lua/`, once per process."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def source(name: str) -> str:
    return resources.files("kew_plug.backends").joinpath("lua", f"{name}.lua").read_text("utf-8")
