"""Cheap synthetic fitness functions for the search tests, importable by worker processes (``synthetic:NAME``).

Controlled by environment variables (inherited by spawned workers):
  LMS_TARGET      the clearly best mapping, e.g. "2,5,5"
  LMS_CALLS       file that gets one line per call: the mapping and the pid
  LMS_DIE_AFTER   raise KeyboardInterrupt on call number N+1 (an interruption after N evaluations)
  LMS_KILL_MAIN   SIGKILL the calling process on call number N+1 (the search process, with workers: 0)
  LMS_FAULT       "kill:2,5,5" / "sleep:2,5,5" / "always:2,5,5": SIGKILL on the first attempt only, sleep 60 s on
                  the first attempt only, or SIGKILL on every attempt; LMS_MARK is the marker file of "first"
"""

import json
import os
import signal
import time
from pathlib import Path


def _calls() -> list[str]:
    path = os.environ.get("LMS_CALLS")
    return Path(path).read_text().splitlines() if path and Path(path).is_file() else []


def _log(mapping) -> int:
    path = os.environ.get("LMS_CALLS")
    n = len(_calls())
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"mapping": list(mapping), "pid": os.getpid()}) + "\n")
    return n


def score(mapping, target) -> float:
    """1 at the target, falling with the L1 distance: one clear optimum."""
    return 1.0 - sum(abs(a - b) for a, b in zip(mapping, target, strict=True)) / (6.0 * len(target))


def _target(task):
    return tuple(int(x) for x in os.environ.get("LMS_TARGET", "2,5,5").split(","))


def peak(task):
    """The synthetic landscape, plus the interruption and fault hooks above."""
    n = _log(task.mapping)
    die_after = os.environ.get("LMS_DIE_AFTER")
    if die_after is not None and n >= int(die_after):
        raise KeyboardInterrupt(f"interrupted after {n} evaluations")
    kill_main = os.environ.get("LMS_KILL_MAIN")
    if kill_main is not None and n >= int(kill_main):
        os.kill(os.getpid(), signal.SIGKILL)
    fault = os.environ.get("LMS_FAULT")
    if fault:
        kind, _, where = fault.partition(":")
        if tuple(int(x) for x in where.split(",")) == tuple(task.mapping):
            mark = Path(os.environ["LMS_MARK"])
            first = not mark.exists()
            mark.touch()
            if kind == "always" or (kind == "kill" and first):
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "sleep" and first:
                time.sleep(60)
            if kind == "error" and first:
                raise RuntimeError("transient failure")
    return {"fitness": score(task.mapping, _target(task)), "scores": {"synthetic": score(task.mapping, _target(task))}}


def distilled(task):
    """A real proxy distillation (tiny models): fitness = minus the held-out distillation loss after it."""
    from bertpress.search.fitness import proxy_recipe
    from bertpress.train.run import distill

    _log(task.mapping)
    loss = distill(proxy_recipe(task, Path(task.work_dir)), overwrite=True).summary["final"]["loss"]
    return {"fitness": -loss, "distill_loss": loss}
