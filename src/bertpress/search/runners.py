"""Where fitness evaluations run: in the search process (one by one, or in cohorts that share the teacher's
forward), in local worker processes, or as Ray tasks.

Every runner takes a batch of :class:`EvalTask` and reports each one's :data:`Outcome` through a callback as soon as
it is final, so the search can save its state after every evaluation. A worker that crashes (even by SIGKILL),
times out or raises is recorded in the outcome's ``attempts`` and the evaluation is retried ``retries`` times;
after that the mapping is reported as failed and the search goes on. A :class:`BertpressError` (bad input, the
same for every mapping) stops the search instead.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from bertpress.errors import BertpressError
from bertpress.search.fitness import EvalTask, FitnessFn, execute, execute_cohort, resolve_fitness

log = logging.getLogger(__name__)

#: ``{"status": "ok" | "failed", "result": {...} | None, "attempts": [{"status", "error", "seconds"}, ...]}``
Outcome = dict[str, Any]
OnDone = Callable[[EvalTask, Outcome], None]


class Runner(Protocol):
    def run(self, tasks: Sequence[EvalTask], on_done: OnDone) -> None: ...

    def close(self) -> None: ...


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _attempt(status: str, error: str | None, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"status": status, "error": error, "seconds": round(seconds, 2), **extra}


class _Retrying:
    """Book-keeping shared by the runners: attempts per task, retry or give up, report outcomes."""

    def __init__(self, retries: int, on_done: OnDone) -> None:
        self.retries, self.on_done = retries, on_done
        self.attempts: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)

    def success(self, task: EvalTask, result: dict[str, Any], seconds: float) -> None:
        self.attempts[task.key].append(_attempt("ok", None, seconds))
        self.on_done(task, {"status": "ok", "result": result, "attempts": self.attempts.pop(task.key)})

    def failure(self, task: EvalTask, status: str, error: str, seconds: float) -> bool:
        """Record a failed attempt; True when the task should be tried again."""
        tries = self.attempts[task.key]
        tries.append(_attempt(status, error, seconds))
        log.warning("evaluation of %s failed (%s, attempt %d): %s", list(task.mapping), status, len(tries), error)
        if len(tries) <= self.retries:
            return True
        self.on_done(task, {"status": "failed", "result": None, "attempts": self.attempts.pop(task.key)})
        return False


def settle(book: _Retrying, pending: collections.deque, task: EvalTask, status: str, payload: Any,
           seconds: float) -> None:
    """Book one attempt's outcome: success, retry (queued first) or failure; a bad input stops the search."""
    if status == "ok":
        book.success(task, payload, seconds)
    elif status == "bad_input":
        raise BertpressError(f"evaluating mapping {list(task.mapping)}: {payload}")
    elif book.failure(task, status, payload, seconds):
        pending.appendleft(task)


class InlineRunner:
    """Evaluations one after another in this process: no isolation and no timeout (a crash ends the search,
    which ``--resume`` continues); for debugging, tests and cheap fitness functions."""

    def __init__(self, retries: int = 1, fitness: FitnessFn | None = None) -> None:
        self.retries, self.fitness = retries, fitness

    def run(self, tasks: Sequence[EvalTask], on_done: OnDone) -> None:
        book = _Retrying(self.retries, on_done)
        for task in tasks:
            fn = self.fitness or resolve_fitness(task.fitness)
            while True:
                start = time.perf_counter()
                status, payload = execute(task, fn)
                seconds = time.perf_counter() - start
                if status == "ok":
                    book.success(task, payload, seconds)
                    break
                if status == "bad_input":
                    raise BertpressError(f"evaluating mapping {list(task.mapping)}: {payload}")
                if not book.failure(task, status, payload, seconds):
                    break

    def close(self) -> None:
        pass


class CohortRunner:
    """Proxy evaluations in this process, ``size`` mappings at a time: each cohort's students are distilled
    together with one teacher forward per batch, then scored one by one (:func:`execute_cohort`); every fitness
    equals the one a solo evaluation with the same threads gives. A member that fails is retried on its own. No
    isolation and no timeout (as :class:`InlineRunner`): a crash ends the search, which ``--resume`` continues."""

    def __init__(self, size: int, retries: int = 1) -> None:
        self.size, self.retries = size, retries

    def run(self, tasks: Sequence[EvalTask], on_done: OnDone) -> None:
        book = _Retrying(self.retries, on_done)
        pending = collections.deque(tasks)
        retry: collections.deque[EvalTask] = collections.deque()
        while pending or retry:
            if retry:  # alone, so that one failing member cannot fail a cohort again
                task = retry.popleft()
                start = time.perf_counter()
                status, payload = execute(task)
                settle(book, retry, task, status, payload, time.perf_counter() - start)
                continue
            group = [pending.popleft() for _ in range(min(self.size, len(pending)))]
            start = time.perf_counter()
            outcomes = execute_cohort(group)
            share = (time.perf_counter() - start) / len(group)
            for task, (status, payload) in zip(group, outcomes, strict=True):
                seconds = payload["seconds"] if status == "ok" else share
                settle(book, retry, task, status, payload, seconds)

    def close(self) -> None:
        pass


def _exit_on_sigterm(_signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signal.SIGTERM)


def _worker_main(conn: Connection, threads: int) -> None:
    """A worker process: evaluate the tasks that arrive on ``conn`` until ``None`` or the pipe closes."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the search process's to handle
    # stopped with SIGTERM: exit through Python, so multiprocessing finalisers release what the worker holds
    # (e.g. tqdm's lock semaphore), instead of "leaked semaphore objects" warnings after the search's Ctrl-C
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(execute(task))


class _Worker:
    def __init__(self, ctx: Any, index: int, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, threads), name=f"bertpress-lms-{index}",
                                daemon=True)
        self.proc.start()
        child.close()
        self.task: EvalTask | None = None
        self.started = 0.0

    def give(self, task: EvalTask) -> None:
        self.task, self.started = task, time.perf_counter()
        self.conn.send(task)

    def kill(self) -> None:
        """Stop the worker: SIGTERM (a clean exit), then SIGKILL if it has not gone within 2 s."""
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class LocalPoolRunner:
    """``workers`` long-lived processes (spawned, so no state is shared with the search process), each running
    torch with ``threads`` threads. A dead or timed-out worker is replaced by a fresh one."""

    def __init__(self, workers: int, *, threads: int = 1, timeout_s: float | None = None, retries: int = 1) -> None:
        self.size, self.threads, self.timeout_s, self.retries = max(1, workers), threads, timeout_s, retries
        self.ctx = mp.get_context("spawn")
        self.workers: list[_Worker] = []
        self.spawned = 0

    def _new_worker(self) -> _Worker:
        self.spawned += 1
        return _Worker(self.ctx, self.spawned, self.threads)

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.workers[self.workers.index(w)] = self._new_worker()

    def run(self, tasks: Sequence[EvalTask], on_done: OnDone) -> None:
        book = _Retrying(self.retries, on_done)
        pending = collections.deque(tasks)
        while len(self.workers) < min(self.size, len(pending)):
            self.workers.append(self._new_worker())
        while pending or any(w.task for w in self.workers):
            for w in self.workers:
                if w.task is None and pending:
                    try:
                        w.give(pending[0])
                        pending.popleft()
                    except (BrokenPipeError, OSError):
                        self._replace(w)
            busy = [w for w in self.workers if w.task is not None]
            if not busy:
                continue
            now = time.perf_counter()
            limit = None if self.timeout_s is None else max(
                0.0, min(w.started + self.timeout_s - now for w in busy))
            ready = set(wait([x for w in busy for x in (w.conn, w.proc.sentinel)], timeout=limit))
            for w in busy:
                task, seconds = w.task, time.perf_counter() - w.started
                assert task is not None
                status, payload = None, None
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        if w.conn.poll():
                            status, payload = w.conn.recv()
                    except (EOFError, OSError):
                        pass
                    if status is None:
                        w.proc.join(5)
                        code = w.proc.exitcode
                        why = f"killed by signal {signal.Signals(-code).name}" if code and code < 0 else \
                            f"exit code {code}"
                        status, payload = "crashed", f"worker process died ({why})"
                elif self.timeout_s is not None and seconds >= self.timeout_s:
                    status, payload = "timeout", f"no result after {self.timeout_s:g}s: worker killed"
                if status is None:
                    continue
                w.task = None
                if status in ("crashed", "timeout"):
                    self._replace(w)
                settle(book, pending, task, status, payload, seconds)

    def close(self) -> None:
        for w in self.workers:
            if w.task is None and w.proc.is_alive():
                with contextlib.suppress(BrokenPipeError, OSError):
                    w.conn.send(None)
                w.proc.join(2)
            w.kill()
        self.workers = []


def _ray_execute(task: EvalTask) -> tuple[str, Any]:
    import torch

    torch.set_num_threads(max(1, task.threads))
    return execute(task)


class RayRunner:
    """Evaluations as Ray tasks (``num_cpus=threads`` each, at most ``workers`` in flight) on the cluster at
    ``address`` (``None``: a local Ray instance). Every node needs bertpress installed and the recipe's data paths."""

    def __init__(self, workers: int, *, threads: int = 1, timeout_s: float | None = None, retries: int = 1,
                 address: str | None = None, runtime_env: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise BertpressError("search.backend 'ray' needs Ray: pip install 'bertpress[ray]', or use "
                                 "backend: local") from None
        self.ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, runtime_env=runtime_env, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise BertpressError(f"cannot connect to the Ray cluster at {address!r} ({e}): start one with "
                                     "'ray start --head', fix search.ray_address, or use backend: local") from None
        self.size, self.timeout_s, self.retries = max(1, workers), timeout_s, retries
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(_ray_execute)

    def run(self, tasks: Sequence[EvalTask], on_done: OnDone) -> None:
        ray = self.ray
        book = _Retrying(self.retries, on_done)
        pending = collections.deque(tasks)
        flying: dict[Any, tuple[EvalTask, float]] = {}
        while pending or flying:
            while pending and len(flying) < self.size:
                task = pending.popleft()
                flying[self.remote.remote(task)] = (task, time.perf_counter())
            now = time.perf_counter()
            limit = None if self.timeout_s is None else max(
                0.0, min(t0 + self.timeout_s - now for _, t0 in flying.values()))
            done, _ = ray.wait(list(flying), num_returns=1, timeout=limit)
            for ref in done:
                task, t0 = flying.pop(ref)
                try:
                    status, payload = ray.get(ref)
                except ray.exceptions.RayError as e:
                    status, payload = "crashed", f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                settle(book, pending, task, status, payload, time.perf_counter() - t0)
            now = time.perf_counter()
            for ref, (task, t0) in list(flying.items()):
                if self.timeout_s is not None and now - t0 >= self.timeout_s:
                    ray.cancel(ref, force=True)
                    del flying[ref]
                    settle(book, pending, task, "timeout",
                                 f"no result after {self.timeout_s:g}s: Ray task cancelled", now - t0)

    def close(self) -> None:
        pass


def evaluation_threads(spec: Any) -> int:
    """Torch threads per evaluation: ``search.threads``, else the cores shared among the parallel evaluations."""
    parallel = 1 if spec.backend == "cohort" else max(1, spec.workers)
    return spec.threads or max(1, available_cores() // parallel)


def make_runner(spec: Any, *, fitness: FitnessFn | None = None,
                runtime_env: dict[str, Any] | None = None) -> Runner:
    """The runner a recipe's ``search:`` section asks for (``fitness``: an in-process callable, inline only)."""
    threads = evaluation_threads(spec)
    if spec.backend == "ray":
        return RayRunner(spec.workers, threads=threads, timeout_s=spec.timeout_s, retries=spec.retries,
                         address=spec.ray_address, runtime_env=runtime_env)
    if spec.backend == "cohort":
        return CohortRunner(spec.cohort_size, spec.retries)
    if spec.workers == 0:
        return InlineRunner(spec.retries, fitness)
    return LocalPoolRunner(spec.workers, threads=threads, timeout_s=spec.timeout_s, retries=spec.retries)
