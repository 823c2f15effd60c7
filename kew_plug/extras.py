"""Optional dependencies and the pip extra that brings each one, so a missing one is named
with its fix instead of surfacing as a bare ImportError."""

from __future__ import annotations

EXTRAS: dict[str, str] = {
    "fakeredis": "fakeredis",
    "lupa": "fakeredis",
    "dill": "dill",
    "multiprocess": "harness",
    "plotly": "harness",
    "rich": "cli",
    "prometheus_client": "cli",
    "starlette": "dashboard",
    "uvicorn": "dashboard",
    "jinja2": "dashboard",
}


def missing_extra(error: ImportError) -> str | None:
    """'install it with ...' for an optional dependency that failed to import, else None."""
    top = (error.name or "").partition(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return f"{top} is not installed; install it with: pip install 'kew-plug[{extra}]'"
