"""What a user imports: every part the README's parts table names comes from `kew_plug`
while the core loads no backend, and no module of the user's own (a `serializers.py`, a
`backends/` package) can stand in for kew-plug's parts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import kew_plug
from kew_plug.backends.breakers import LocalBreaker
from kew_plug.backends.fake import FakeRedisStore
from kew_plug.backends.memory import MemoryStore
from kew_plug.backends.redis.breaker import RedisBreaker
from kew_plug.backends.redis.store import RedisStore
from kew_plug.serializers.pickling import CloudpickleSerializer, DillSerializer, PickleSerializer
from kew_plug.serializers.signed import Signed

PARTS = {
    "RedisStore": RedisStore,
    "MemoryStore": MemoryStore,
    "FakeRedisStore": FakeRedisStore,
    "LocalBreaker": LocalBreaker,
    "RedisBreaker": RedisBreaker,
    "Signed": Signed,
    "CloudpickleSerializer": CloudpickleSerializer,
    "DillSerializer": DillSerializer,
    "PickleSerializer": PickleSerializer,
}


def run(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_part_in_the_readme_table_imports_from_kew_plug() -> None:
    for name, part in PARTS.items():
        assert getattr(kew_plug, name) is part
        assert name in kew_plug.__all__ and name in dir(kew_plug)


def test_every_kew_plug_error_imports_from_kew_plug() -> None:
    # A user catches what the README says a call raises without knowing kew_plug.errors.
    import kew_plug.errors

    errors = {
        name
        for name, value in vars(kew_plug.errors).items()
        if isinstance(value, type) and issubclass(value, kew_plug.errors.KewError)
    }
    assert {"TaskCancelled", "TaskNotFound", "Unsupported"} <= errors
    for name in errors:
        assert name in kew_plug.__all__
        assert getattr(kew_plug, name) is getattr(kew_plug.errors, name)


def test_importing_kew_plug_loads_no_backend_until_one_is_named() -> None:
    done = run(
        """
        import sys
        import kew_plug
        loaded = [m for m in sys.modules if m.startswith(("kew_plug.backends",
                  "kew_plug.serializers", "redis", "fakeredis", "cloudpickle", "dill"))]
        assert loaded == [], loaded
        from kew_plug import RedisStore
        assert "kew_plug.backends.redis.store" in sys.modules
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_users_serializers_and_backends_modules_are_never_imported(tmp_path: Path) -> None:
    (tmp_path / "serializers.py").write_text("raise RuntimeError('user serializers imported')\n")
    (tmp_path / "backends").mkdir()
    (tmp_path / "backends" / "__init__.py").write_text(
        "raise RuntimeError('user backends imported')\n"
    )
    (tmp_path / "backends" / "lua").mkdir()  # a folder a file lookup could stumble into
    done = run(
        """
        import asyncio, sys
        from kew_plug import Queue, Worker

        async def main(store):
            queue = Queue(store, name="clash")
            handle = await queue.submit(pow, (2, 10))
            await Worker(queue).drain()
            assert await handle.result(timeout=5) == 1024
            await queue.aclose()

        for store in ("memory", "fakeredis"):
            asyncio.run(main(store))
        mine = [m for m in ("serializers", "backends") if m in sys.modules]
        assert sys.path[0] == "" and mine == [], (sys.path[0], mine)
        print("ok")
        """,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
