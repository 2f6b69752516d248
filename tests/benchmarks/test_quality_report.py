"""The quality benchmark's report code on a fixture results file: table rows, the margin over the best baseline."""

import json
import statistics
from pathlib import Path

import pytest
import torch


def test_screen_report(tmp_path, benchmark_script):
    report = {
        "command": "python benchmarks/quality/run.py --steps 10", "machine": {"cpu": "x", "cpu_count": 2,
                                                                           "load_average": [0.1]},
        "budget": {"steps": 10, "batch_size": 4, "seed": 1, "tokens": 5120},
        "rows": [
            {"name": "teacher", "kind": "teacher", "layers": "1-6", "zeroshot": 86.7, "proxy_stsb": 82.3},
            {"name": "copy-a", "kind": "baseline", "layers": [1, 3, 5], "zeroshot": 70.0, "proxy_stsb": 30.0},
            {"name": "copy-b", "kind": "baseline", "layers": [1, 3, 6], "zeroshot": 80.0, "proxy_stsb": 40.0},
            {"name": "cand", "kind": "distilled", "layers": [1, 3, 6], "mapping": [1, 3, 6], "loss_start": 2.0,
             "loss_end": 1.25, "train_time_s": 12.5, "zeroshot": 81.0, "proxy_stsb": 37.5},
        ]}
    benchmark_script("quality").write_report(report, tmp_path)
    md = (tmp_path / "screen.md").read_text()
    assert "| cand | 3L-384H | distilled | [1, 3, 6] | [1, 3, 6] | 2.000 -> 1.250 | 81.0 | 37.5 | -2.5 | 12.5 |" in md
    assert "| copy-a | 3L-384H | baseline | [1, 3, 5] | - | - | 70.0 | 30.0 | -10.0 | - |" in md
    assert "4 blocks x 128 tokens = 5,120 tokens" in md
    assert (tmp_path / "screen.png").stat().st_size > 1000
    assert (tmp_path / "screen.json").is_file()


def test_curve_report(tmp_path, benchmark_script):
    report = {"command": "python benchmarks/quality/run.py --phase curve", "candidate": "tinybert-top-probs",
              "machine": {"cpu": "x", "load_average": [0.1]}, "batch_size": 16, "seed": 42,
              "rows": [{"step": 0, "tokens": 0, "zeroshot": 82.0, "proxy_stsb": 26.7},
                       {"step": 150, "tokens": 307_200, "zeroshot": 83.3, "proxy_stsb": 32.0},
                       {"step": 300, "tokens": 614_400, "zeroshot": 83.9, "proxy_stsb": 35.5}],
              "teacher": {"zeroshot": 86.7, "proxy_stsb": 82.3},
              "heldout": [{"step": 0, "loss": 0.19}, {"step": 150, "loss": 0.081}, {"step": 300, "loss": 0.07}],
              "train_time_s": 600.0}
    benchmark_script("quality").write_curve(report, tmp_path)
    md = (tmp_path / "curve.md").read_text()
    assert "| 0 | 0 | 0.1900 | 82.0 | 26.7 |" in md and "| 300 | 614,400 | 0.0700 | 83.9 | 35.5 |" in md
    assert "one run of 300 steps x 16 blocks" in md and "Teacher: zero-shot 86.7, proxy STS-B 82.3." in md
    assert (tmp_path / "curve.png").stat().st_size > 1000


FULL = {"max_length": 128, "lr": 5e-5, "batch_size": 32, "seeds": [1, 2, 3], "epochs": 6.0}


def test_schedule_report(tmp_path, benchmark_script):
    report = {"command": "python benchmarks/quality/run.py --phase schedule", "machine": {"cpu": "x",
                                                                                         "load_average": [0.1]},
              "models": ["teacher", "copy", "student"],
              "rows": [{"schedule": "proxy, 2 epochs", "scores": {"teacher": [82.0], "copy": [27.0],
                                                                   "student": [32.0]}},
                       {"schedule": "full, 6 epochs", "settings": FULL,
                        "scores": {"teacher": [86.0, 86.0, 87.0], "copy": [70.0, 72.0, 71.0],
                                   "student": [79.0, 78.0, 80.0]}}]}
    benchmark_script("quality").write_schedule(report, tmp_path)
    md = (tmp_path / "schedule.md").read_text()
    assert "STS-B under 2 schedules" in md and "128 tokens, lr 5e-05, batch 32, seeds 1, 2, 3" in md
    # retention = 32 / 82; one seed: no paired test
    assert "| proxy, 2 epochs | 82.0 | 27.0 | 32.0 | 39.0% | +5.0 | - |" in md
    # three seeds: mean ± sample std, margin 79.0 - 71.0, every seed a win, paired t-test over the differences (9, 6, 9)
    assert "| full, 6 epochs | 86.3 ± 0.6 | 71.0 ± 1.0 | 79.0 ± 1.0 | 91.5% | +8.0 | 3/3 seeds, p = 0.015 |" in md
    assert (tmp_path / "schedule.png").stat().st_size > 1000
    assert (tmp_path / "schedule.json").is_file()


def test_schedule_report_other_task(tmp_path, benchmark_script):
    """Another task writes ``schedule-TASK.*`` (the STS-B report stays) and names the task and its metric."""
    report = {"command": "python benchmarks/quality/run.py --phase schedule --task cola", "task": "cola",
              "machine": {"cpu": "x", "load_average": [0.1]}, "models": ["teacher", "copy", "student"],
              "rows": [{"schedule": "full, 3 epochs (default)", "settings": {**FULL, "epochs": 3.0},
                        "scores": {"teacher": [40.0, 42.0, 41.0], "copy": [10.0, 12.0, 8.0],
                                   "student": [10.0, 11.0, 9.0]}}]}
    benchmark_script("quality").write_schedule(report, tmp_path)
    md = (tmp_path / "schedule-cola.md").read_text()
    assert "CoLA under 1 schedules" in md and "Score: Matthews corr. x100" in md
    # retention 10 / 41; margin 0; differences (0, -1, 1): one win out of three
    assert "| full, 3 epochs (default) | 41.0 ± 1.0 | 10.0 ± 2.0 | 10.0 ± 1.0 | 24.4% | +0.0 | 1/3 seeds" in md
    assert not (tmp_path / "schedule.md").exists() and (tmp_path / "schedule-cola.png").is_file()


def test_curve_report_with_long_proxy(tmp_path, benchmark_script):
    report = {"command": "python benchmarks/quality/run.py --phase curve --long-proxy", "candidate": "c",
              "machine": {"cpu": "x", "load_average": [0.1]}, "batch_size": 16, "seed": 42,
              "rows": [{"step": 0, "tokens": 0, "zeroshot": 82.0, "proxy_stsb": 26.7, "proxy_stsb_long": 70.5},
                       {"step": 150, "tokens": 307_200, "zeroshot": 83.3, "proxy_stsb": 32.0, "proxy_stsb_long": 78.4}],
              "teacher": {"zeroshot": 86.7, "proxy_stsb": 82.3, "proxy_stsb_long": 90.2},
              "heldout": [{"step": 0, "loss": 0.19}, {"step": 150, "loss": 0.081}], "train_time_s": 60.0}
    benchmark_script("quality").write_curve(report, tmp_path, name="curve-long-proxy")
    md = (tmp_path / "curve-long-proxy.md").read_text()
    assert "| step | tokens | held-out loss | zero-shot STS-B | proxy STS-B | proxy STS-B, 6 epochs |" in md
    assert "| 150 | 307,200 | 0.0810 | 83.3 | 32.0 | 78.4 |" in md
    assert "proxy STS-B, 6 epochs 90.2." in md
    assert (tmp_path / "curve-long-proxy.png").stat().st_size > 1000


def test_shipped_recipe_is_the_yaml_but_for_paths(tmp_path, monkeypatch, benchmark_script):
    """Phase 2's ``recipe-NAME`` distils ``recipes/NAME.yaml`` as shipped: only the output and corpus paths move."""
    import yaml

    monkeypatch.setenv("BERTPRESS_DATA", str(tmp_path / "data"))
    quality = benchmark_script("quality")
    got = quality.shipped_recipe("tinybert-3l", tmp_path / "out")
    shipped = yaml.safe_load((quality.RECIPES / "tinybert-3l.yaml").read_text())
    assert got["output_dir"] == str(tmp_path / "out" / "recipe-tinybert-3l")
    assert got["data"]["sources"] == [str(tmp_path / "data" / "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz")]
    for section in ("teacher", "student", "objective", "mapping", "train"):
        assert shipped[section].items() <= got[section].items(), section
    assert (got["seed"], got["data"]["block_size"]) == (shipped["seed"], shipped["data"]["block_size"])
    with pytest.raises(SystemExit, match="no-such-recipe.yaml does not exist"):
        quality.shipped_recipe("no-such-recipe", tmp_path)
    longer = quality.shipped_recipe("tinybert-3l@steps4000", tmp_path / "out")  # a larger budget, nothing else
    assert longer["output_dir"] == str(tmp_path / "out" / "recipe-tinybert-3l@steps4000")
    assert longer["train"] == {**got["train"], "max_steps": 4000} and shipped["train"]["max_steps"] != 4000
    assert {k: v for k, v in longer.items() if k not in ("train", "output_dir")} == {
        k: v for k, v in got.items() if k not in ("train", "output_dir")}


def test_finetune_margins(tmp_path, benchmark_script):
    def model(label, role, average, rte, rte_std, sst2):
        return {"label": label, "role": role, "average": average, "tasks": {
            "rte": {"mean": {"score": rte}, "std": {"score": rte_std}, "n": 3},
            "sst2": {"mean": {"score": sst2}, "std": {}, "n": 1}}}

    report = {"tasks": [{"name": "rte", "title": "RTE"}, {"name": "sst2", "title": "SST-2"}],
              "models": [model("teacher", "teacher", 80.0, 60.0, 1.0, 90.0),
                         model("copy-1-3-5", "student", 60.0, 50.0, 3.0, 80.0),  # a baseline, not the best
                         model("copy-1-3-6", "student", 70.0, 55.0, 3.0, 85.0),  # the best baseline
                         model("cand", "student", 76.0, 60.0, 4.0, 86.5)]}
    benchmark_script("quality").write_margins(report, tmp_path)
    md = (tmp_path / "margins.md").read_text()
    assert "(`copy-1-3-6`, average 70.0)" in md
    assert "| cand | +5.0 ± 5.0 | +1.5 | +6.0 | - | 95.0% |" in md  # 5.0 is not beyond hypot(4, 3) = 5.0
    assert "copy-1-3-6 keeps 87.5%" in md
    report["models"][3]["tasks"]["rte"]["mean"]["score"] = 61.0
    benchmark_script("quality").write_margins(report, tmp_path)
    assert "| cand | **+6.0 ± 5.0** |" in (tmp_path / "margins.md").read_text()
    assert (tmp_path / "results.png").stat().st_size > 1000


def test_margins_name_each_models_learning_rate_when_a_grid_ran(tmp_path, benchmark_script):
    def model(label, role, rte_lr, rte_grid, sst2_lr):
        return {"label": label, "role": role, "average": 70.0, "tasks": {
            "rte": {"mean": {"score": 60.0}, "std": {"score": 1.0}, "n": 3, "lr": rte_lr, "grid": rte_grid},
            "sst2": {"mean": {"score": 80.0}, "std": {}, "n": 1, "lr": sst2_lr,
                     "grid": {"5e-05": 80.0, "0.0001": 79.0}}}}

    report = {"tasks": [{"name": "rte", "title": "RTE"}, {"name": "sst2", "title": "SST-2"}],
              "models": [model("teacher", "teacher", 5e-5, {"5e-05": 60.0, "0.0001": 59.0}, 5e-5),
                         model("copy-1-3-6", "student", 1e-4, {"5e-05": 58.0, "0.0001": 60.0}, 5e-5),
                         model("cand", "student", 1e-4, {"5e-05": 57.0, "0.0001": 60.0}, 1e-4)]}
    benchmark_script("quality").write_margins(report, tmp_path)
    md = (tmp_path / "margins.md").read_text()
    assert "each model's best of 5e-05, 0.0001 per task" in md
    assert ("Chosen: teacher: RTE 5e-05, SST-2 5e-05; copy-1-3-6: RTE 0.0001, SST-2 5e-05; cand: RTE 0.0001, "
            "SST-2 0.0001.") in md
    for m in report["models"]:  # one learning rate each: no such line
        for t in m["tasks"].values():
            t["grid"] = {"5e-05": t["mean"]["score"]}
    benchmark_script("quality").write_margins(report, tmp_path)
    assert "Fine-tuning learning rate" not in (tmp_path / "margins.md").read_text()


def test_average_margin_spread_is_over_per_seed_averages(tmp_path, benchmark_script):
    """The average's spread is the std of the per-seed averages (a one-seed task adds its score to each seed's)."""
    quality = benchmark_script("quality")

    def model(label, rte_by_seed, sst2):
        rte = list(rte_by_seed)
        return {"label": label, "role": "student", "average": (statistics.mean(rte) + sst2) / 2, "tasks": {
            "rte": {"mean": {"score": statistics.mean(rte)}, "std": {"score": statistics.stdev(rte)}, "n": 3,
                    "runs": [{"seed": s, "metrics": {"score": v}} for s, v in zip((1, 2, 3), rte, strict=True)]},
            "sst2": {"mean": {"score": sst2}, "std": {}, "n": 1, "runs": [{"seed": 1, "metrics": {"score": sst2}}]}}}

    base, cand = model("copy-1-3-6", (50.0, 52.0, 54.0), 80.0), model("cand", (56.0, 57.0, 58.0), 82.0)
    assert quality.seed_averages(base, ["rte", "sst2"]) == {1: 65.0, 2: 66.0, 3: 67.0}
    assert quality.seed_averages(base, ["sst2"]) == {}
    report = {"tasks": [{"name": "rte", "title": "RTE"}, {"name": "sst2", "title": "SST-2"}], "models": [base, cand]}
    quality.write_margins(report, tmp_path)
    # average margin (57 + 82) / 2 - (52 + 80) / 2 = 3.5; spread hypot(stdev(65, 66, 67), stdev(69, 69.5, 70)) = 1.1
    # paired by seed: differences 4, 3.5, 3 -> t = 3.5 / (0.5 / sqrt(3)) = 12.1, 2 df, p = 0.0067
    assert ("| cand | **+5.0 ± 2.2** | +2.0 | **+3.5 ± 1.1** | 3/3 seeds, p = 0.007 |"
            in (tmp_path / "margins.md").read_text())


def test_average_after_the_run_equals_the_recipe_field(tmp_path, tiny_teacher_mlm, tiny_corpus, benchmark_script):
    """``NAME@avgS`` (averaged after the run, the init rebuilt) saves what ``train.average_with_init: S`` saves."""
    from safetensors.torch import load_file

    from bertpress.train.run import distill

    def recipe(name, share):
        return {"output_dir": str(tmp_path / name), "seed": 3, "teacher": {"name_or_path": str(tiny_teacher_mlm)},
                "student": {"num_layers": 2, "init": "select", "init_args": {"layers": [2, 4]}},
                "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
                "train": {"max_steps": 12, "batch_size": 8, "lr": 1e-3, "eval_every": 0, "save_every": 0,
                          "num_workers": 0, "average_with_init": share}}

    distill(recipe("plain", 0.0))
    in_run = load_file(str(distill(recipe("avg", 0.5)).student_dir / "model.safetensors"))
    path = benchmark_script("quality").model_path("plain@avg0.5", tmp_path)
    assert path == tmp_path / "plain@avg0.5"
    after = load_file(str(path / "model.safetensors"))
    assert after.keys() == in_run.keys()
    for k in after:
        assert torch.allclose(after[k], in_run[k], atol=1e-6), k
    assert json.loads((path / "bertpress.json").read_text())["average_with_init"]["share"] == 0.5


def test_zero_shot_margin_gets_a_paired_bootstrap_interval(tmp_path, benchmark_script, monkeypatch):
    """Zero-shot STS-B has no seed: its margin's spread is a paired bootstrap over the dev pairs."""
    import numpy as np

    quality = benchmark_script("quality")
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 300)
    sims = {Path("base"): gold + rng.normal(0, 3.0, 300), Path("cand"): gold + rng.normal(0, 0.5, 300)}
    monkeypatch.setattr(quality, "zeroshot_similarities", lambda path: (tuple(sims[path]), tuple(gold)))

    def model(label, zs):
        return {"label": label, "role": "student", "average": zs,
                "tasks": {"stsb-zeroshot": {"mean": {"score": zs}, "std": {}, "n": 1}}}

    report = {"tasks": [{"name": "stsb-zeroshot", "title": "STS-B zero-shot"}],
              "models": [model("copy-1-3-6", 60.0), model("cand", 90.0)]}
    quality.write_margins(report, tmp_path, paths={"copy-1-3-6": Path("base"), "cand": Path("cand")})
    md = (tmp_path / "margins.md").read_text()
    boot = quality.paired_bootstrap_spearman(gold, sims[Path("cand")], sims[Path("base")])
    lo, hi = boot["ci95"]
    assert lo > 0 and f"| cand | **+30.0 [{lo:+.1f}, {hi:+.1f}]** |" in md
    assert "95% paired-bootstrap interval of the difference over the 300 dev pairs" in md
    sims[Path("cand")] = sims[Path("base")]  # no better than the baseline: the interval holds 0, not bold
    quality.write_margins(report, tmp_path, paths={"copy-1-3-6": Path("base"), "cand": Path("cand")})
    assert "| cand | +30.0 [+0.0, +0.0] |" in (tmp_path / "margins.md").read_text()


def test_budget_report_extrapolates_the_average_to_the_goal(tmp_path, monkeypatch, benchmark_script):
    """A shipped recipe fine-tuned at two budgets gets ``budget.md``: its points and the log-linear extrapolation to
    the shape's retention goal (here 4L-256H: 92% of 80 = 73.6; +2 per doubling from 68 at 8M tokens reaches 73.6
    after 2.8 doublings, 8M * 2**2.8 = 55.7M tokens)."""
    monkeypatch.setenv("BERTPRESS_DATA", str(tmp_path / "data"))
    quality = benchmark_script("quality")

    def model(label, average, tokens=None):
        m = {"label": label, "role": "teacher" if label == "teacher" else "student", "average": average,
             "tasks": {"rte": {"mean": {"score": average}, "n": 1}}}
        return m | ({"training": {"what": "distillation", "tokens": tokens}} if tokens else {})

    report = {"tasks": [{"name": "rte", "title": "RTE"}],
              "models": [model("teacher", 80.0), model("etd-4x256-1-3-5-6", 60.0),
                         model("recipe-tinybert-4x256", 68.0, 8_000_000),
                         model("recipe-tinybert-4x256@steps4000", 70.0, 16_000_000),
                         model("recipe-tinybert-4x256@avg0.5", 66.0, 8_000_000)]}  # not a budget point
    assert [m["label"] for m in quality.budget_series(report)["tinybert-4x256"]] == [
        "recipe-tinybert-4x256", "recipe-tinybert-4x256@steps4000"]
    fit = quality.budget_fit([8e6, 16e6, 32e6], [68.0, 70.0, 72.0], 73.6)
    assert fit["per_doubling"] == pytest.approx(2.0) and fit["tokens_for_target"] == pytest.approx(8e6 * 2 ** 2.8)
    assert quality.budget_fit([8e6, 16e6], [68.0, 67.0], 73.6)["tokens_for_target"] is None
    quality.write_budget(report, tmp_path)
    md = (tmp_path / "budget.md").read_text()
    assert "## tinybert-4x256 (4L-256H; goal 92% = average 73.6)" in md
    assert "| 0.0M | etd-4x256-1-3-5-6 | 60.0 | 60.0 | 75.0% |" in md
    assert "| 16.0M | recipe-tinybert-4x256@steps4000 | 70.0 | 70.0 | 87.5% |" in md
    assert "Average per doubling of the tokens: +2.00; the goal is reached at about 56M tokens (3.5x" in md
    report["models"][3]["average"] = 67.0
    quality.write_budget(report, tmp_path)
    assert "-1.00; more tokens do not reach the goal" in (tmp_path / "budget.md").read_text()
    assert json.loads((tmp_path / "budget.json").read_text())["fits"]["tinybert-4x256"]["goal_retention"] == 92.0
    assert (tmp_path / "budget.png").stat().st_size > 1000
