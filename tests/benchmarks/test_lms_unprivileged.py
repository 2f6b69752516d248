"""The unprivileged layer-mapping benchmark's analysis on fixture results: which mappings are evaluated fully, the
paired comparison with the best heuristic, the proxy-vs-full rank correlation, the report."""

import random
import re

import pytest

TASKS = ("rte", "mrpc", "stsb", "cola", "sst2")


def _record(mapping, fitness):
    return {"mapping": mapping, "fitness": fitness, "scores": {"sst2": fitness + 1, "stsb-zeroshot": -fitness},
            "distill_loss": 1 / (1 + fitness)}


def test_arms_span_the_proxy_ranking(benchmark_script):
    bench = benchmark_script("lms", "unprivileged")
    heuristics = {"uniform": [2, 3, 4, 6], "last": [3, 4, 5, 6], "skip": [1, 3, 4, 5]}
    records = [_record([1, 1, 1, k], 50 - k) for k in range(1, 7)] + [_record(m, 10.0) for m in heuristics.values()]
    records.append({"mapping": [2, 2, 2, 2], "fitness": None, "scores": None, "distill_loss": None})
    arms = bench.pick_arms(records, heuristics, [1, 1, 1, 1], n=8)
    assert list(arms)[:4] == ["searched", "uniform", "last", "skip"]
    extra = [m for n, m in arms.items() if n.startswith("rank")]
    # the searched [1,1,1,1] is taken: 5 ranked others, 4 needed -> ranks 0, 1, 3, 4 (round(i * 4/3))
    assert extra == [[1, 1, 1, 2], [1, 1, 1, 3], [1, 1, 1, 5], [1, 1, 1, 6]]
    assert len({tuple(m) for m in arms.values()}) == 8
    assert len(bench.pick_arms(records[:2], heuristics, [1, 1, 1, 1], n=8)) == 5, "fewer evaluated than asked"


def _full(average, seeds=(1, 2, 3), noise=0.0, rng=None):
    runs = {t: {s: average + (rng.gauss(0, noise) if rng else 0.0) for s in seeds} for t in TASKS}
    return {"label": "", "tasks": {t: {"runs": [{"seed": s, "metrics": {"score": v}} for s, v in runs[t].items()]}
                                   for t in TASKS} | {"stsb-zeroshot": {"mean": {"score": average + 10}}}}


def test_analysis_on_fixture_results(benchmark_script):
    bench = benchmark_script("lms", "unprivileged")
    rng = random.Random(0)
    arms = {"searched": [1, 2, 4, 6], "uniform": [2, 3, 4, 6], "last": [3, 4, 5, 6], "skip": [1, 3, 4, 5]}
    truth = {"1-2-4-6": 64.0, "2-3-4-6": 61.0, "3-4-5-6": 55.0, "1-3-4-5": 60.0}
    evaluation = {"models": []}
    for lab, avg in truth.items():
        row = _full(avg, noise=0.5, rng=rng)
        row["label"] = lab
        evaluation["models"].append(row)
    full = bench.full_scores(evaluation)
    assert full["1-2-4-6"]["seeds"] == [1, 2, 3] and full["1-2-4-6"]["average"] == pytest.approx(64, abs=1)
    records = {lab: _record([int(x) for x in lab.split("-")], avg / 10) for lab, avg in truth.items()}
    a = bench.analyse(arms, records, full, {lab: 100 - avg for lab, avg in truth.items()})
    assert a["best_heuristic"] == "uniform"
    cmp = a["comparison"]
    assert cmp["by_run"]["n"] == 15 and cmp["by_run"]["mean_diff"] == pytest.approx(3, abs=0.6)
    assert cmp["by_run"]["beyond_noise"] and cmp["by_seed_average"]["n"] == 3
    c = a["correlation"]
    assert c["proxy fitness"]["spearman"] == pytest.approx(1.0)
    assert c["proxy stsb-zeroshot"]["spearman"] == pytest.approx(-1.0)
    assert c["final held-out loss (negated)"]["kendall"] == pytest.approx(1.0)
    # the search returning a heuristic is reported as such, not compared with itself
    same = bench.analyse({**arms, "searched": arms["uniform"]}, records, full, {k: 1.0 for k in truth})
    assert same["comparison"] is None and same["searched_is_a_heuristic"]


def test_report_on_fixture_results(benchmark_script, tmp_path):
    bench = benchmark_script("lms", "unprivileged")
    arms = {"searched": [1, 2, 4, 6], "uniform": [2, 3, 4, 6], "last": [3, 4, 5, 6], "skip": [1, 3, 4, 5],
            "rank1-1-2-3": [1, 1, 2, 3]}
    truth = {"1-2-4-6": 64.0, "2-3-4-6": 61.0, "3-4-5-6": 55.0, "1-3-4-5": 60.0, "1-1-2-3": 50.0}
    rng = random.Random(1)
    models = [{**_full(avg, seeds=(1,) if lab == "1-1-2-3" else (1, 2, 3), noise=0.5, rng=rng), "label": lab}
              for lab, avg in truth.items()]
    full = bench.full_scores({"models": models})
    proxy = {lab: _record([int(x) for x in lab.split("-")], avg / 10) for lab, avg in truth.items()}
    heldout = {lab: 100 - avg for lab, avg in truth.items()}
    baselines = {n: {"mapping": arms[n], "fitness": proxy["-".join(map(str, arms[n]))]["fitness"]}
                 for n in ("uniform", "last", "skip")}
    settings = {"max_train_examples": 2000, "lr": 1e-4, "epochs": 3}
    result = {
        "recipe": "recipes/search-4x256.yaml", "machine": {"cpu": "x", "cores": 2, "torch": "2"},
        "cost": {"solo": {"threads": 2, "distill_s": 70.0, "proxy_s": 40.0, "mean_seconds": 110.0,
                          "fitness": {"2-3-4-6": 6.1}, "proxy": {"steps": 100, "batch_size": 16, "tasks": ["sst2"]}},
                 "cohort": {"threads": 2, "distill_s": 35.0, "proxy_s": 40.0, "mean_seconds": 75.0,
                            "fitness": {"2-3-4-6": 6.1}}, "same_fitness": True},
        "search": {"best": {"mapping": arms["searched"], "fitness": 6.4}, "baselines": baselines,
                   "space": {"description": "monotone: 126 mappings", "covered": 0.22},
                   "evaluations": {"distinct": 28, "failed": 0, "mean_seconds": 75.0}, "wall_time_s": 2100.0,
                   "backend": "cohort", "search": {"proxy": {"steps": 100, "batch_size": 16, "tasks": ["sst2"]}}},
        "arms": arms, "proxy": {lab: {k: p[k] for k in ("fitness", "scores", "distill_loss")}
                                for lab, p in proxy.items()},
        "final_distillation": {lab: {"heldout": h, "steps": 300, "tokens": 614_400} for lab, h in heldout.items()},
        "full_evaluation": full, "full_eval_settings": {t: settings for t in TASKS},
        "analysis": bench.analyse(arms, proxy, full, heldout),
        "phases": {"search": {"command": "bertpress search-mapping", "seconds": 2100.0,
                              "load_1min": {"min": 2.0, "mean": 2.1, "max": 2.3}}},
    }
    result["reproxy"] = _reproxy(truth)
    result["analysis"] = bench.analyse(arms, proxy, full, heldout, result["reproxy"])
    md = bench.markdown(result)
    assert "## 6. Better proxies" in md and "loss within 2.0e-02 (relative) of the search's records" in md
    # 3 seeds: 30 s of scoring per arm, 1 seed: a third; plus the 40 s distillation share
    assert "| ft, 3 seeds | seeds=[0,1,2] | 30 | 70 | +1.00 |" in md
    assert "| ft, 1 seed | seeds=[0,1,2] (its first seed alone) | 10 | 50 | -1.00 |" in md
    assert "ft: its best arm is 1-2-4-6, number 1 of 5 on the full average (best: 1-2-4-6)" in md
    assert re.search(r"\| 1-2-4-6 \| 6\d\.\d\d \| 6\d\.\d \| 6\d\.\d ± 1\.0 \|", md) and "Ceiling set by the full evaluation's own noise" in md
    assert "| solo | 2 | 70 | 40 | 110 |" in md and "0.68x" in md and "identical under both backends: yes" in md
    assert "Best heuristic on the full evaluation: uniform" in md and "beyond noise" in md
    assert "| searched | [1, 2, 4, 6] | 6.40 | 36.0000 |" in md
    assert "| proxy fitness | +1.00 |" in md
    assert "seeds [1, 2, 3] for the searched mapping and the heuristics, [1] for the other arms" in md
    assert "(seeds [1], which every arm ran) over the 5 distinct arm mappings" in md
    bench.plot(result, tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 1000


def test_rank_arms_run_fewer_seeds_and_correlation_uses_the_shared_ones(benchmark_script, monkeypatch, tmp_path):
    """The searched mapping and the heuristics get every seed, the other arms ``--rank-seeds``; the proxy-vs-full
    correlation ranks all arms on the seeds they share, not on averages over different seed sets."""
    import argparse

    bench = benchmark_script("lms", "unprivileged")
    arms = {"searched": [3, 4, 5, 6], "uniform": [2, 3, 4, 6], "last": [3, 4, 5, 6], "skip": [1, 3, 4, 5],
            "rank1-1-2-3": [1, 1, 2, 3]}
    monkeypatch.setattr(bench, "arms_of", lambda args: arms)
    args = argparse.Namespace(work=tmp_path, eval_seeds=[1, 2, 3], rank_seeds=[1])
    groups = bench.eval_groups(args)
    assert groups["compare"] == ([[3, 4, 5, 6], [2, 3, 4, 6], [1, 3, 4, 5]], [1, 2, 3])
    assert groups["ranks"] == ([[1, 1, 2, 3]], [1])

    def row(label, by_seed):
        return {"label": label, "tasks": {t: {"runs": [{"seed": s, "metrics": {"score": v}} for s, v in
                                                       by_seed.items()]} for t in TASKS}}

    # seed 1 orders 1-1-2-3 > 2-3-4-6 > 3-4-5-6 > 1-3-4-5; the 3-seed averages would put 3-4-5-6 first
    full = bench.full_scores({"models": [row("3-4-5-6", {1: 50.0, 2: 70.0, 3: 70.0}),
                                         row("2-3-4-6", {1: 55.0, 2: 56.0, 3: 57.0}),
                                         row("1-3-4-5", {1: 40.0, 2: 41.0, 3: 42.0}),
                                         row("1-1-2-3", {1: 60.0})]})
    assert full["1-1-2-3"]["seeds"] == [1] and full["1-1-2-3"]["std"] == 0.0
    fitness = {"1-1-2-3": 4.0, "2-3-4-6": 3.0, "3-4-5-6": 2.0, "1-3-4-5": 1.0}
    records = {lab: _record([int(x) for x in lab.split("-")], f) for lab, f in fitness.items()}
    a = bench.analyse(arms, records, full, {lab: 10 - f for lab, f in fitness.items()})
    assert a["correlation_seeds"] == [1]
    assert a["correlation"]["proxy fitness"]["spearman"] == pytest.approx(1.0)
    assert a["best_heuristic"] == "last" and a["comparison"] is None and a["searched_equals"] == ["last"]
    # searched = last, but uniform best: still compared with uniform
    full["2-3-4-6"] = {**full["2-3-4-6"], "average": 99.0}
    b = bench.analyse(arms, records, full, {lab: 10 - f for lab, f in fitness.items()})
    assert b["searched_equals"] == ["last"] and b["best_heuristic"] == "uniform"
    assert b["comparison"]["heuristic"] == "uniform" and b["comparison"]["by_run"]["n"] == 15


def _reproxy(truth):
    """Candidate ``ft``: 3 seeds whose mean ranks like ``truth`` and whose first seed ranks the other way."""
    order = sorted(truth, key=truth.get)
    arms = {lab: {"fitness": truth[lab], "fitness_std": 1.0, "fitness_by_seed": [-order.index(lab), 0, 0],
                  "seconds": 30.0} for lab in truth}
    students = {lab: {"distill_loss": 0.51, "search_distill_loss": 0.5, "distill_s": 40.0} for lab in truth}
    return {"students": students, "candidates": {"ft": {"tasks": ["stsb"], "overrides": ["seeds=[0,1,2]"],
                                                         "arms": arms}}}


def test_candidate_proxies_are_correlated_and_bounded_by_the_noise_ceiling(benchmark_script):
    bench = benchmark_script("lms", "unprivileged")
    truth = {"1-2-4-6": 64.0, "2-3-4-6": 61.0, "3-4-5-6": 55.0, "1-3-4-5": 60.0}
    labels = sorted(truth)
    signals = bench.reproxy_signals(_reproxy(truth), labels)
    assert signals == {"ft, 3 seeds": [truth[x] for x in labels],
                       "ft, 1 seed": [-sorted(truth, key=truth.get).index(x) for x in labels]}
    partial = _reproxy(truth)
    del partial["candidates"]["ft"]["arms"]["1-2-4-6"]
    assert bench.reproxy_signals(partial, labels) == {}, "a candidate missing an arm is not correlated"
    assert bench.reproxy_signals(None, labels) == {}
    # no seed noise: a perfect proxy reaches rho 1; noise far above the gaps between arms: rho near 0
    t = [50.0, 52.0, 54.0, 56.0, 58.0, 60.0, 62.0, 64.0]
    assert bench.noise_ceiling(t, 1e-9, draws=200)["mean"] == pytest.approx(1.0)
    loud = bench.noise_ceiling(t, 1000.0, draws=2000)
    assert abs(loud["mean"]) < 0.1 and loud["p10"] < 0 < loud["p90"]
    mid = bench.noise_ceiling(t, 2.0, draws=2000)
    assert 0.5 < mid["mean"] < 0.95
