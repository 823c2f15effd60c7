"""The embedded fakeredis server in a process of its own, so its Python work does not share
a GIL with the harness parent. Started and stopped by PID."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import multiprocess

from harness.servers import EmbeddedServer, free_port


def _serve(host: str, port: int, ready: Any) -> None:
    EmbeddedServer(host, port).start()
    ready.set()
    threading.Event().wait()  # serve until the parent stops this process by PID


class EmbeddedProcess:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, free_port(host)
        ctx = multiprocess.get_context("spawn")
        self._ready = ctx.Event()
        self._proc = ctx.Process(
            target=_serve, args=(host, self.port, self._ready), name="kew-fakeredis", daemon=True
        )

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc.is_alive() else None

    def start(self, timeout: float = 20.0) -> EmbeddedProcess:
        self._proc.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError("the embedded fakeredis server did not start")
        return self

    def stop(self) -> None:
        pid = self._proc.pid
        if pid is not None and self._proc.is_alive():
            os.kill(pid, signal.SIGTERM)
            self._proc.join(5)
            if self._proc.is_alive():
                os.kill(pid, signal.SIGKILL)
                self._proc.join(5)
