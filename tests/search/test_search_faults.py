"""Fault injection in the worker pool: a worker SIGKILLed mid-evaluation, a hung worker, a mapping that always
kills its worker, a search process killed mid-search (then resumed), and the Ray runner."""

import json
import os
import signal
import sys

import pytest
from lms_helpers import SEARCH_DIR, write_recipe

from bertpress.cli import main
from bertpress.search.search import search_mapping


def _record(out, mapping):
    records = json.loads((out / "state.json").read_text())["records"]
    return next(r for r in records if r["mapping"] == mapping)


def test_worker_sigkilled_mid_evaluation_is_retried(search_recipe, synth, tmp_path, monkeypatch):
    monkeypatch.setenv("LMS_FAULT", "kill:2,5,5")  # the optimum kills its worker on the first attempt
    out = tmp_path / "s"
    result = search_mapping(search_recipe(workers=2, timeout_s=60), search_dir=out)
    assert result.best_mapping == list(synth.target), "the search went on and found the optimum"
    record = _record(out, [2, 5, 5])
    assert [a["status"] for a in record["attempts"]] == ["crashed", "ok"]
    assert "killed by signal SIGKILL" in record["attempts"][0]["error"]
    assert result.summary["evaluations"]["retried"] == 1
    assert len(synth.pids()) >= 3, "the dead worker was replaced"


def test_hung_worker_times_out_and_is_retried(search_recipe, synth, tmp_path, monkeypatch):
    monkeypatch.setenv("LMS_FAULT", "sleep:4,5,6")
    out = tmp_path / "s"
    result = search_mapping(search_recipe(workers=2, timeout_s=3, generations=0), search_dir=out)
    record = _record(out, [4, 5, 6])
    assert [a["status"] for a in record["attempts"]] == ["timeout", "ok"]
    assert record["attempts"][0]["seconds"] < 30
    assert result.summary["baselines"]["last"]["fitness"] is not None


def test_mapping_that_always_crashes_fails_and_search_goes_on(search_recipe, synth, tmp_path, monkeypatch):
    monkeypatch.setenv("LMS_FAULT", "always:1,3,5")
    out = tmp_path / "s"
    result = search_mapping(search_recipe(workers=2, generations=1), search_dir=out)
    record = _record(out, [1, 3, 5])
    assert record["status"] == "failed" and record["fitness"] is None
    assert [a["status"] for a in record["attempts"]] == ["crashed", "crashed"]
    assert result.summary["evaluations"]["failed"] == 1 and result.summary["baselines"]["skip"]["fitness"] is None
    n = len(synth.calls())
    search_mapping(search_recipe(workers=2, generations=1), search_dir=out, resume=True)
    assert len(synth.calls()) == n, "a failed mapping is not evaluated again on resume"


def test_search_process_sigkilled_then_resumed(search_recipe, synth, tmp_path, monkeypatch, capsys):
    recipe = write_recipe(tmp_path / "recipe.yaml", search_recipe(generations=2))
    out = tmp_path / "s"
    monkeypatch.setenv("LMS_KILL_MAIN", "6")  # the 7th evaluation SIGKILLs the search process itself
    pid = os.fork()  # the search in a child process (it does no torch work, so forking is safe)
    if pid == 0:
        try:
            main(["search-mapping", str(recipe), "--output-dir", str(out)])
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    state = json.loads((out / "state.json").read_text())
    assert len(state["records"]) == 6 and not (out / "best_mapping.yaml").exists()
    monkeypatch.delenv("LMS_KILL_MAIN")
    assert main(["search-mapping", str(recipe), "--output-dir", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "best mapping [" in printed and "56 mappings" in printed
    finished = [tuple(m) for m in synth.calls()]
    assert len(finished) == len(set(finished)) + 1  # only the call killed mid-evaluation was repeated
    summary = json.loads((out / "search.json").read_text())
    assert summary["sessions"] == 2 and summary["evaluations"]["distinct"] == len(set(finished))
    reference = search_mapping(search_recipe(generations=2), search_dir=tmp_path / "ref")
    assert (summary["best"]["mapping"], summary["best"]["fitness"]) == \
        (reference.best_mapping, reference.summary["best"]["fitness"])
    assert [g["population"] for g in summary["generations"]] == \
        [g["population"] for g in reference.summary["generations"]]


def test_ctrl_c_mid_evaluation_exits_cleanly(search_recipe, synth, tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) while a worker runs a real distillation: exit 130 with
    the one line, the busy worker stopped cleanly - no "leaked semaphore objects" warning from its tqdm lock."""
    import subprocess
    import time

    recipe = search_recipe(workers=1, fitness="synthetic:distilled", generations=1)
    recipe["train"]["max_steps"] = 5000  # the first evaluation is still running when Ctrl-C comes
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SEARCH_DIR), *sys.path]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bertpress", "search-mapping", str(path), "--output-dir",
                             str(tmp_path / "s")], stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            # as in a terminal, also under a shell's background job (which passes SIGINT ignored)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not synth.calls() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(2)  # the worker's distillation (and its progress bar) is under way
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 130, err[-2000:]
    assert lines[-1] == "bertpress: interrupted", lines[-3:]
    assert "leaked" not in err and "Traceback" not in err, err[-2000:]


@pytest.mark.slow  # a local Ray instance takes ~20 s to start; CI does not install ray
def test_ray_runner(search_recipe, synth, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("LMS_FAULT", "kill:2,5,5")
    env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("LMS_")} |
           {"PYTHONPATH": os.pathsep.join([str(SEARCH_DIR), *sys.path])}}
    try:
        result = search_mapping(search_recipe(workers=2, backend="ray", threads=1, timeout_s=120, generations=3),
                                search_dir=tmp_path / "s", runtime_env=env)
    finally:
        ray.shutdown()
    assert result.summary["backend"] == "ray"
    record = _record(tmp_path / "s", [2, 5, 5])
    assert record["status"] == "ok" and record["attempts"][0]["status"] == "crashed"
    calls = synth.calls()
    assert len({tuple(c) for c in calls}) == result.summary["evaluations"]["distinct"]
