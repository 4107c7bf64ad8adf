"""describe's gate beside the event loop: during a live run a process of its own judges the replies, so the
loop only sends, receives and journals (its CPU per request is the transport's).

    with JudgeProcess(todo, cfg.gate) as judging:          # forked before the event loop starts
        ...                                                 # then on the loop, for each reply:
        status, reason = await judging.judge(req, text, finish_reason)

The process is forked from the run's own process before the event loop starts, so it inherits the requests
(each one's PoseFacts, prompt and image flag) instead of receiving them: per reply only (number, cache key,
text, finish_reason) goes over a socket pair and (number, verdict) comes back. Verdicts are
pipeline.describe.validate.judge's own, so they are those of judging on the loop. The process ends when the
run closes its socket (or the run's process dies). If it dies mid-run, the replies it held (paid for) and
every later one are judged on the loop instead, so each reaches the journal, and `gone` says why: the run then
stops sending and fails (pipeline.describe.openai_backend.run_requests). A gate bug fails the run as it would
on the loop. Its CPU time is reported (`cpu_s`), so a benchmark counts it.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing as mp
import signal
import time
from multiprocessing.connection import Connection

from pipeline.describe.config import DescriptionRequest
from pipeline.describe.validate import Gate, Verdict, judge
from pipeline.errors import PipelineError


def _verdict(req: DescriptionRequest, text: str | None, finish_reason: str | None, gate: Gate) -> Verdict:
    """judge's verdict on one reply to `req`; ("failed", the error) for a gate bug."""
    try:
        return judge(
            text, finish_reason, req.facts, gate, prompt=req.prompt, saw_image=req.image_input is not None
        )
    except Exception as err:  # a gate bug: the run fails with it (JudgeProcess.judge)
        return "failed", f"{type(err).__name__}: {err}"


def _serve(conn: Connection, runs_end: Connection, requests: list[DescriptionRequest], gate: Gate) -> None:
    """The judging process: a verdict for every (number, cache key, text, finish_reason) until None arrives;
    then its CPU time."""
    runs_end.close()  # with the run's end closed here, the run's death (even by -9) ends this process: EOF
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle: it closes the socket
    by_key = {r.cache_key: r for r in requests}
    try:
        while (msg := conn.recv()) is not None:
            number, key, text, finish_reason = msg
            conn.send((number, _verdict(by_key[key], text, finish_reason, gate)))
        conn.send(time.process_time())
    except (EOFError, OSError):
        pass  # the run went away (its end of the socket closed)


class JudgeProcess:
    """The gate in a forked process, awaited from the event loop (module docstring)."""

    def __init__(self, requests: list[DescriptionRequest], gate: Gate):
        # A socket pair: its buffers hold a window of texts in flight, so sending one does not wait.
        self._conn, its_end = mp.Pipe(duplex=True)
        self._process = mp.get_context("fork").Process(
            target=_serve, args=(its_end, self._conn, requests, gate), name="describe-gate", daemon=True
        )
        self._process.start()
        its_end.close()
        self._gate = gate
        # number -> (the future its verdict resolves, the reply it judges)
        self._pending: dict[int, tuple[asyncio.Future, DescriptionRequest, str | None, str | None]] = {}
        self._numbers = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.cpu_s = 0.0
        self.gone: str | None = None  # why the process ended mid-run, once it has

    def __enter__(self) -> JudgeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def judge(self, req: DescriptionRequest, text: str | None, finish_reason: str | None) -> Verdict:
        """The gate's verdict on one reply to `req` (which must be one of the requests the process holds)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._conn.fileno(), self._receive)
        if self.gone is None:
            number = next(self._numbers)
            future = self._loop.create_future()
            self._pending[number] = (future, req, text, finish_reason)
            try:  # waits only when more than a socket buffer of texts is queued for the process
                self._conn.send((number, req.cache_key, text, finish_reason))
            except OSError:
                self._lost()  # judges this reply too
            status, reason = await future
        else:
            status, reason = _verdict(req, text, finish_reason, self._gate)
        if status == "failed":
            raise PipelineError(f"the gate failed on a reply to {req.image}: {reason}")
        return status, reason

    def _receive(self) -> None:
        """Every verdict the process has sent so far, each to the ask waiting for it."""
        try:
            while self._conn.poll():
                number, verdict = self._conn.recv()
                future = self._pending.pop(number)[0]
                if not future.cancelled():
                    future.set_result(verdict)
        except (EOFError, OSError):
            self._lost()

    def _lost(self) -> None:
        """The process died mid-run: the replies it held are judged here, and so is every later one."""
        self._loop.remove_reader(self._conn.fileno())
        self.gone = f"the gate's process ({self._process.pid}) died mid-run ({self._why()})"
        for future, req, text, finish_reason in self._pending.values():
            if not future.done():
                future.set_result(_verdict(req, text, finish_reason, self._gate))
        self._pending.clear()

    def _why(self) -> str:
        self._process.join(timeout=1.0)
        code = self._process.exitcode
        return "still running" if code is None else f"exit code {code}"

    def close(self) -> None:
        """Stop the process (after the verdicts in flight) and read its CPU time into cpu_s."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._conn.fileno())
        try:
            self._conn.send(None)
            while (msg := self._conn.recv()) is not None and not isinstance(msg, float):
                pass  # verdicts nobody waits for any more (a run stopped by an error)
            self.cpu_s = msg or 0.0
        except (EOFError, OSError):
            pass
        self._conn.close()
        self._process.join(timeout=5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
