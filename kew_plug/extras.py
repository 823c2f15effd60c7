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


def missing_extra(error: ImportError, extra: str | None = None) -> str | None:
    """'install it with ...' for an optional dependency that failed to import, else None.
    `extra` names the extra to install instead of the one that brings the dependency (the
    harness needs several; its own extra brings them all)."""
    top = (error.name or "").partition(".")[0]
    if top not in EXTRAS:
        return None
    extra = extra or EXTRAS[top]
    return f"{top} is not installed; install it with: pip install 'kew-plug[{extra}]'"
