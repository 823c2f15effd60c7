"""Throwaway servers the tests and the harness own: a `redis-server` on a free loopback port
(stopped and restarted by PID, never by name) and the embedded fakeredis server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["EmbeddedServer", "RedisServer", "free_port", "redis_server_binary"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedServer:
    """A fakeredis server on a loopback TCP port, served from a thread of this process, that
    separate OS processes can share. Speaks RESP; Lua runs through lupa."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port or free_port(host)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> EmbeddedServer:
        if self._server is None:
            import fakeredis  # only here: RedisServer users need no fakeredis

            self._server = fakeredis.TcpFakeServer((self.host, self.port), server_type="redis")
            self._server.daemon_threads = True
            self._server.block_on_close = False
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="kew-fakeredis", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """A private redis-server. `durable=True` turns on the append-only file with fsync on
    every write, so a restart keeps every acknowledged write."""

    def __init__(
        self,
        port: int = 0,
        durable: bool = False,
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.binary = found
        self.port = port or free_port()
        self.durable = durable
        self.extra_args = extra_args
        self.dir = Path(tempfile.mkdtemp(prefix="kew-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--save", "", "--protected-mode", "yes"]
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += list(self.extra_args)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} on start")
            if self._answers():
                return self
            time.sleep(0.01)
        self.stop()
        raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                reply = s.recv(64)
                return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def signal(self, signum: int) -> None:
        """Send `signum` to this server's process (SIGSTOP/SIGCONT to freeze it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
