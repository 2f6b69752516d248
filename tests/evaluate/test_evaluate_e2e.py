"""``bertpress evaluate`` end to end on tiny models and fixture data: the compare report, the cache, proxy mode."""

import json

import numpy as np
import pytest

import bertpress.evaluate.suite as suite
from bertpress.cli import main
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.proxy import proxy_scores


def evaluate(*args):
    return main(["evaluate", *map(str, args), "--no-progress"])


def test_compare_report_and_cache(tmp_path, task_data, tiny_pair, monkeypatch, capsys):
    teacher, student = tiny_pair
    common = ["--teacher", f"tiny-teacher={teacher}", f"tiny-student={student}", "--tasks",
              "rte,stsb,conll2003,squad", "--data-dir", task_data, "--cache-dir", tmp_path / "cache",
              "--set", "epochs=1", "--set", "squad.max_length=64", "--set", "squad.doc_stride=16"]
    trained = []
    real_train = suite.train
    monkeypatch.setattr(suite, "train", lambda *a, **k: trained.append(k["desc"]) or real_train(*a, **k))

    assert evaluate(*common, "--seeds", 1, 2, "--output-dir", tmp_path / "a") == 0
    assert len(trained) == 2 * 4 * 2  # models x tasks x seeds
    report = json.loads((tmp_path / "a" / "results.json").read_text())
    t, s = report["models"]
    assert (t["role"], s["role"], report["teacher"]) == ("teacher", "student", "tiny-teacher")
    for m in (t, s):
        assert m["average"] == pytest.approx(np.mean([m["tasks"][k]["mean"]["score"] for k in m["tasks"]]))
        rte = m["tasks"]["rte"]
        scores = [r["metrics"]["score"] for r in rte["runs"]]
        assert rte["n"] == 2 and [r["seed"] for r in rte["runs"]] == [1, 2]
        assert rte["mean"]["score"] == pytest.approx(np.mean(scores))
        assert rte["std"]["score"] == pytest.approx(np.std(scores, ddof=1))
        assert set(m["tasks"]["squad"]["mean"]) == {"exact_match", "f1", "score"}
    assert t["retention"] == pytest.approx(100.0)
    assert s["retention"] == pytest.approx(100 * s["average"] / t["average"])
    assert s["speedup"]["32"] == pytest.approx(t["latency"]["32"]["median_ms"] / s["latency"]["32"]["median_ms"])
    assert s["parameters"] < t["parameters"] and s["size_mb"] < t["size_mb"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "a" / "tensorboard" / "tiny-student")).Reload()
    assert events.Scalars("score/rte")[0].value == pytest.approx(s["tasks"]["rte"]["mean"]["score"])
    assert events.Scalars("retention")[0].value == pytest.approx(s["retention"])
    md = (tmp_path / "a" / "results.md").read_text()
    assert md.startswith("| Model | RTE | STS-B | CoNLL03 | SQuAD1.1 | Avg | Retention | Params | Size | "
                         "CPU ms, batch 1 | CPU ms, batch 32 | Speed-up (b1 / b32) | CPU ms / sentence |\n")
    assert all(m["sentence_latency"]["median_ms"] > 0 for m in (t, s))  # CoNLL03 is a task: per-sentence latency
    rte_t = t["tasks"]["rte"]
    assert f"| **tiny-teacher** (teacher) | {rte_t['mean']['score']:.1f} ± {rte_t['std']['score']:.1f} |" in md
    assert f"| {s['average']:.1f} | {s['retention']:.1f}% |" in md
    assert (tmp_path / "a" / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert md.split("\n\n")[0] in capsys.readouterr().out

    # the same command again: everything comes from the cache; one more seed: only the new runs
    trained.clear()
    assert evaluate(*common, "--seeds", 1, 2, "--output-dir", tmp_path / "b", "--no-latency") == 0
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    assert not trained
    assert [m["tasks"] for m in again["models"]] == [m["tasks"] for m in report["models"]]
    assert evaluate(*common, "--seeds", 1, 2, 3, "--output-dir", tmp_path / "c", "--no-latency") == 0
    assert len(trained) == 2 * 4 and all("seed=3" in d for d in trained)


def test_proxy_is_deterministic(tmp_path, task_data, tiny_pair, capsys):
    _, student = tiny_pair
    first = proxy_scores(student, task_data, cache=ResultCache(tmp_path / "c1"))
    second = proxy_scores(student, task_data, cache=ResultCache(tmp_path / "c2"))
    assert first == second
    assert set(first) == {"sst2", "stsb", "conll2003", "fitness"}
    assert first["fitness"] == pytest.approx(np.mean([first["sst2"], first["stsb"], first["conll2003"]]))
    assert evaluate(student, "--proxy", "--data-dir", task_data, "--cache-dir", tmp_path / "c1") == 0
    assert f"proxy fitness {first['fitness']:.4f}" in capsys.readouterr().out


def test_proxy_with_several_seeds_reports_its_noise(tmp_path, task_data, tiny_pair, capsys):
    _, student = tiny_pair
    cache = ResultCache(tmp_path / "c")
    one = [proxy_scores(student, task_data, overrides=[f"seeds=[{s}]"], cache=cache) for s in (0, 1)]
    both = proxy_scores(student, task_data, overrides=["seeds=[0,1]"], cache=cache)  # the same runs, from the cache
    assert both["fitness_by_seed"] == pytest.approx([o["fitness"] for o in one])
    assert both["fitness"] == pytest.approx(np.mean(both["fitness_by_seed"]))
    assert both["fitness_std"] == pytest.approx(np.std(both["fitness_by_seed"], ddof=1))
    assert "fitness_std" not in one[0]
    assert evaluate(student, "--proxy", "--set", "seeds=[0,1]", "--data-dir", task_data, "--cache-dir",
                    tmp_path / "c") == 0
    assert f"proxy fitness {both['fitness']:.4f} ± {both['fitness_std']:.4f} over seeds" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path, task_data, tiny_pair, capsys):
    _, student = tiny_pair
    bad = tmp_path / "data"
    (bad / "glue" / "RTE").mkdir(parents=True)
    (bad / "glue" / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tentailment\n")
    (bad / "glue" / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    assert evaluate(student, "--tasks", "rte", "--data-dir", bad) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"bertpress: error: {bad}/glue/RTE/train.tsv:2: expected 4 tab-separated fields, found 3: "
                   "fix or remove the row")
    assert evaluate(tmp_path, "--data-dir", task_data) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_lr_grid_reports_the_best_mean(tmp_path, tiny_pair, monkeypatch):
    from bertpress.evaluate.settings import resolve_settings
    from bertpress.evaluate.tasks import TASKS, TaskData

    table = {(1e-5, 1): 60.0, (1e-5, 2): 70.0, (3e-5, 1): 64.0, (3e-5, 2): 68.0, (1e-4, 1): 90.0, (1e-4, 2): 10.0}
    monkeypatch.setattr(suite, "_one_run", lambda spec, runner, features, tok, s, lr, seed, task, progress: {
        "lr": lr, "seed": seed, "metrics": {"accuracy": table[lr, seed], "score": table[lr, seed]},
        "train_seconds": 0.0, "eval_seconds": 0.0})
    monkeypatch.setattr(suite.GlueRunner, "train_features", lambda self, tok, s: [])
    settings = resolve_settings(["rte"], ["lr_grid=[1e-5, 3e-5, 1e-4]", "seeds=[1, 2]"])["rte"]
    data = TaskData(TASKS["rte"], [], {"dev": []}, ("entailment", "not_entailment"), ["fixture"])
    result = suite.evaluate_task(suite.ModelSpec("s", tiny_pair[1]), data, settings, ResultCache(tmp_path))
    assert result["grid"] == {"1e-05": 65.0, "3e-05": 66.0, "0.0001": 50.0}
    assert result["lr"] == 3e-5 and result["mean"]["score"] == 66.0
    assert result["std"]["score"] == pytest.approx(np.std([64.0, 68.0], ddof=1))


def test_device_choice_and_cache_keys(monkeypatch):
    """CPU results keep the cache keys they always had; a GPU's are cached apart (other random numbers)."""
    from bertpress.evaluate import suite
    from bertpress.evaluate.finetune import eval_device

    monkeypatch.setenv("BERTPRESS_DEVICE", "cpu")
    assert eval_device().type == "cpu" and suite._device_key() == {}
    monkeypatch.setenv("BERTPRESS_DEVICE", "cuda")
    assert suite._device_key() == {"device": "cuda"}


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_proxy_runs_on_the_gpu(tmp_path, task_data, tiny_pair, monkeypatch):
    """The same proxy evaluation on the GPU: model and batches placed there, scores close to the CPU's."""
    _, student = tiny_pair
    monkeypatch.setenv("BERTPRESS_DEVICE", "cpu")
    cpu = proxy_scores(student, task_data, cache=ResultCache(tmp_path / "cpu"))
    monkeypatch.setenv("BERTPRESS_DEVICE", "cuda")
    gpu = proxy_scores(student, task_data, cache=ResultCache(tmp_path / "gpu"))
    assert set(gpu) == set(cpu) and all(np.isfinite(v) for v in gpu.values())
    assert gpu["fitness"] == pytest.approx(cpu["fitness"], abs=10.0)  # other dropout draws on a tiny task
