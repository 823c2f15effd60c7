"""`kew-plug worker`: N worker processes, supervised. A process that dies is restarted and
logged; one that keeps dying soon after its start is restarted with a growing pause (a crash
loop must not spin). The first SIGTERM or SIGINT stops every process gracefully and waits;
a second one kills them at once."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from types import FrameType

from kew_plug.cli.process import ProcessSpec, process_main

log = logging.getLogger("kew_plug.cli")
STABLE_AFTER = 10.0  # a process that ran this long before dying is not crash-looping
MAX_PAUSE = 30.0
STOP_MARGIN = 5.0  # beyond shutdown_timeout, for releasing claims and closing connections


@dataclass
class _Slot:
    spec: ProcessSpec
    process: BaseProcess | None = None
    started: float = 0.0
    pause: float = 0.0  # before the next restart; doubles while the process crash-loops
    restart_at: float = 0.0


class Supervisor:
    def __init__(self, spec: ProcessSpec, processes: int) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(replace(spec, index=k)) for k in range(processes)]
        self._signals = 0
        self._wake = threading.Event()
        self.restarts = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        self._wake.set()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for slot in self._slots:
            self._start(slot)
        while not self._signals:
            self._wake.wait(0.2)
            now = time.monotonic()
            for slot in self._slots:
                if not self._signals:
                    self._check(slot, now)
        return self._stop()

    def _start(self, slot: _Slot) -> None:
        process = self._ctx.Process(target=process_main, args=(slot.spec,), daemon=False)
        process.start()
        slot.process, slot.started = process, time.monotonic()
        log.info("worker process %d started (pid %s)", slot.spec.index, process.pid)

    def _check(self, slot: _Slot, now: float) -> None:
        process = slot.process
        if process is not None and process.is_alive():
            return
        if process is not None:
            code = process.exitcode
            slot.process = None
            ran = now - slot.started
            slot.pause = 0.0 if ran >= STABLE_AFTER else min(MAX_PAUSE, max(0.5, slot.pause * 2))
            slot.restart_at = now + slot.pause
            log.warning(
                "worker process %d (pid %s) exited with %s after %.1f s; restarting in %.1f s",
                slot.spec.index,
                process.pid,
                code,
                ran,
                slot.pause,
            )
        if now >= slot.restart_at:
            self.restarts += 1
            self._start(slot)

    def _stop(self) -> int:
        live = [s.process for s in self._slots if s.process is not None and s.process.is_alive()]
        log.info("stopping %d worker processes", len(live))
        for p in live:
            if p.pid is not None:
                _send(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._slots[0].spec.shutdown_timeout + STOP_MARGIN
        while any(p.is_alive() for p in live):
            if self._signals > 1 or time.monotonic() > deadline:
                why = "second signal" if self._signals > 1 else "stop timed out"
                log.warning("%s: killing %d worker processes", why, sum(p.is_alive() for p in live))
                for p in live:
                    if p.is_alive() and p.pid is not None:
                        _send(p.pid, signal.SIGKILL)
                for p in live:
                    p.join(5)
                return 1
            self._wake.clear()
            self._wake.wait(0.1)
        return 0


def _send(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, sig)
