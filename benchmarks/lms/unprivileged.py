"""Layer mapping search where no mapping is privileged (issue 19): cost, search, proxy validity, winner vs heuristics.

``recipes/search-4x256.yaml``: a 4-layer, 256-wide student extracted (ETD importance) from the packaged 6-layer
teacher, so every mapping reaches the teacher through a fresh projection (126 monotone mappings). Phases, each
resumable (finished work is reused) and journaled with its wall time and the load average while it ran:

  cost      seconds per evaluation before/after: the three heuristic mappings scored solo (one worker, all cores)
            and as one cohort (one teacher forward per batch); the fitness values must agree
  search    the recipe's search (genetic algorithm, cohort backend)
  final     ARMS mappings (the searched one, uniform, last, skip and evaluated mappings spread over the proxy
            ranking) distilled for --final-steps, as one cohort
  evaluate  bertpress evaluate of every arm: RTE, MRPC, STS-B, CoLA, SST-2 (train sets capped, stated) and
            zero-shot STS-B; 3 seeds for the searched mapping and the heuristics, 1 for the other arms
  reproxy   candidate proxies (issue 19, item 4) scored on the arms' proxy students, rebuilt as in the search:
            STS-B fine-tuned for 6 epochs on 2,000 pairs with 3 seeds (about 40 minutes)
  report    benchmarks/lms/results/unprivileged.{json,md,png}: searched vs the best heuristic (paired test over
            task x seed runs), rank correlation of every proxy signal with the full evaluation

    python benchmarks/lms/unprivileged.py all --work /work/runs/lms-4x256

On 2 CPU cores the phases take about 10, 35, 20 and 160 minutes (the last at 3 epochs everywhere; STS-B and
CoLA now fine-tune 6 by default, which adds about an hour). Every finished fine-tuning run is cached in
``results/unprivileged-runs/eval-cache`` (in the repository), keyed by the student's weights: a later session
continues where this one stopped when it rebuilds the same students, i.e. on the same kind of CPU (the final
distillation is deterministic there; another CPU rounds differently and the evaluation starts again).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location("lms_run", Path(__file__).with_name("run.py"))
lms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lms)

RECIPE = "recipes/search-4x256.yaml"
HEURISTICS = ("uniform", "last", "skip")
TASKS = ("rte", "mrpc", "stsb", "cola", "sst2")
ARMS = 8
OUT = "unprivileged"


#: The cost and search phases' directories (records, state, reports: small) are kept here when they finish, so a
#: later session, in a fresh checkout, goes on with the final phase instead of searching again.
SAVED = lms.RESULTS / "unprivileged-runs"
KEPT = ("cost", "search", "reproxy")

#: Candidate proxies scored by the ``reproxy`` phase: label -> (tasks, fine-tuning overrides on top of the proxy
#: mode's). The search's own proxy (zero-shot STS-B after 100 steps) ranked the arms at Spearman +0.24; the full
#: average moves mostly with fine-tuned STS-B, which the proxy mode's 2 epochs barely train (issue 12, schedule).
CANDIDATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "STS-B 2k x 6 ep": (("stsb",), ("max_train_examples=2000", "max_eval_examples=500", "epochs=6", "seeds=[0,1,2]")),
}


def restore(args: argparse.Namespace) -> None:
    """Copy kept phase directories into the work directory where they are missing."""
    for name in KEPT:
        if (SAVED / name).is_dir() and not (args.work / name).exists():
            shutil.copytree(SAVED / name, args.work / name)
    if (SAVED / "journal.json").is_file() and not (args.work / "journal.json").exists():
        shutil.copy(SAVED / "journal.json", args.work / "journal.json")


def keep(args: argparse.Namespace, name: str) -> None:
    """Copy a finished phase directory (without proxy students) into :data:`SAVED`."""
    if (args.work / name).is_dir():
        shutil.rmtree(SAVED / name, ignore_errors=True)
        shutil.copytree(args.work / name, SAVED / name,
                        ignore=shutil.ignore_patterns("work", "tensorboard", "students"))
        shutil.copy(args.work / "journal.json", SAVED / "journal.json")


def cost_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    # the genetic algorithm with no generations, a population of 3 and a budget of 3 scores exactly the heuristics
    common = ["--set", "search.generations=0", "--set", "search.population=3", "--set", "search.max_evaluations=3",
              "--set", "search.baselines=[uniform,last,skip]", *_sets(args.search_set)]
    for key, backend in (("solo", ["--set", "search.backend=local", "--set", "search.workers=0"]),
                         ("cohort", ["--set", "search.backend=cohort"])):
        out = args.work / "cost" / key
        if (out / "search.json").is_file():
            print(f"cost {key}: done ({out})")
            continue
        cmd = ["bertpress", "search-mapping", RECIPE, "--output-dir", str(out), *common, *backend]
        if (out / "state.json").is_file():
            cmd.append("--resume")
        lms.run(cmd, args.work / "logs" / f"cost-{key}.log", journal, f"cost-{key}")
    keep(args, "cost")


def _sets(items: list[str]) -> list[str]:
    return [x for text in items for x in ("--set", text)]


def search_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    out = args.work / "search"
    if (out / "best_mapping.yaml").is_file():
        print(f"search done: {out}")
        return
    cmd = ["bertpress", "search-mapping", RECIPE, "--output-dir", str(out), *_sets(args.search_set)]
    if (out / "state.json").is_file():
        cmd.append("--resume")
    lms.run(cmd, args.work / "logs" / "search.log", journal, "search")
    keep(args, "search")


def pick_arms(records: list[dict[str, Any]], heuristics: dict[str, list[int]], best: list[int],
              n: int = ARMS) -> dict[str, list[int]]:
    """The mappings to evaluate fully: the searched one, the heuristics, then evaluated mappings at evenly spaced
    ranks of the proxy fitness (best to worst), so the proxy-vs-full correlation spans the whole range."""
    arms = {"searched": best, **heuristics}
    taken = {tuple(m) for m in arms.values()}
    ranked = sorted((r for r in records if r["fitness"] is not None and tuple(r["mapping"]) not in taken),
                    key=lambda r: (-r["fitness"], r["mapping"]))
    need = max(0, n - len(taken))
    if need and ranked:
        step = (len(ranked) - 1) / max(1, need - 1)
        picks = sorted({round(i * step) for i in range(min(need, len(ranked)))})
        for i in picks:
            arms["rank" + "-".join(map(str, ranked[i]["mapping"]))] = ranked[i]["mapping"]
    return arms


def arms_of(args: argparse.Namespace) -> dict[str, list[int]]:
    s = json.loads((args.work / "search" / "search.json").read_text())
    records = [json.loads(x) for x in (args.work / "search" / "evaluations.jsonl").read_text().splitlines()]
    return pick_arms(records, {n: s["baselines"][n]["mapping"] for n in HEURISTICS}, s["best"]["mapping"], args.arms)


def _arm_dir(args: argparse.Namespace, mapping: list[int]) -> Path:
    return args.work / "final" / "-".join(map(str, mapping))


def final_recipes(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One recipe per distinct arm mapping: the search recipe with that mapping, at the final budget."""
    import yaml

    base = yaml.safe_load((lms.REPO / RECIPE).read_text())
    base.pop("search")
    out = []
    for mapping in dict.fromkeys(tuple(m) for m in arms_of(args).values()):
        train = {**base["train"], "max_steps": args.final_steps, "batch_size": args.final_batch_size,
                 "eval_every": max(1, args.final_steps // 4), "save_every": max(1, args.final_steps // 4),
                 "mixed_precision": "no"}  # fp32, as the search's proxies ran
        out.append({**base, "name": f"lms-final-{'-'.join(map(str, mapping))}",
                    "output_dir": str(_arm_dir(args, list(mapping))), "train": train,
                    "data": {**base["data"], "sources": [str(lms.REPO / s) for s in base["data"]["sources"]]},
                    "mapping": {"strategy": "explicit", "layers": list(mapping)}})
    return out


def final_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    if all((Path(r["output_dir"]) / "bertpress.json").is_file() for r in final_recipes(args)):
        print("final: done")
        return
    cmd = [sys.executable, str(Path(__file__).resolve()), "_distil", "--work", str(args.work), "--arms",
           str(args.arms), "--final-steps", str(args.final_steps), "--final-batch-size", str(args.final_batch_size)]
    lms.run(cmd, args.work / "logs" / "final.log", journal, "final")


def _distil(args: argparse.Namespace) -> None:
    """The final distillations as one cohort, resumed from their checkpoints when interrupted."""
    from bertpress.train.cohort import distill_cohort

    recipes = final_recipes(args)
    resume = any((Path(r["output_dir"]) / "checkpoints").is_dir() for r in recipes)
    distill_cohort(recipes, resume=resume, overwrite=not resume)


def eval_groups(args: argparse.Namespace) -> dict[str, tuple[list[list[int]], list[int]]]:
    """The two evaluation passes: the searched mapping and the heuristics with every seed (the paired comparison),
    then the other arms with ``--rank-seeds`` only (they serve the rank correlation, scored on the seeds common to
    all arms)."""
    arms = arms_of(args)
    compare = list(dict.fromkeys(tuple(arms[n]) for n in ("searched", *HEURISTICS)))
    ranks = [m for m in dict.fromkeys(tuple(m) for m in arms.values()) if m not in compare]
    return {"compare": ([list(m) for m in compare], args.eval_seeds),
            "ranks": ([list(m) for m in ranks], args.rank_seeds)}


def evaluate_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    for name, (mappings, seeds) in eval_groups(args).items():
        if (args.work / "eval" / name / "results.json").is_file():
            print(f"evaluate {name}: done")
            continue
        models = [f"{'-'.join(map(str, m))}={_arm_dir(args, m)}" for m in mappings]
        cmd = ["bertpress", "evaluate", *models, "--tasks", ",".join([*TASKS, "stsb-zeroshot"]), "--seeds",
               *map(str, seeds), "--no-latency", "--no-progress", "--output-dir", str(args.work / "eval" / name),
               "--cache-dir", str(args.cache_dir), *_sets(args.eval_set)]
        lms.run(cmd, args.work / "logs" / f"evaluate-{name}.log", journal, f"evaluate-{name}")


def reproxy_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    if (args.work / "reproxy" / "scores.json").is_file() and set(json.loads(
            (args.work / "reproxy" / "scores.json").read_text())["candidates"]) >= set(CANDIDATES):
        print("reproxy: done")
        keep(args, "reproxy")
        return
    cmd = [sys.executable, str(Path(__file__).resolve()), "_reproxy", "--work", str(args.work), "--arms",
           str(args.arms)]
    lms.run(cmd, args.work / "logs" / "reproxy.log", journal, "reproxy")
    keep(args, "reproxy")


def _reproxy(args: argparse.Namespace) -> None:
    """Rebuild the arms' proxy students (one cohort, the search's proxy budget; their held-out loss is recorded beside
    the search's, which the report compares), then score each of :data:`CANDIDATES` on them; every score is written
    as soon as it exists."""
    import time

    from bertpress.atomic import atomic_write_json
    from bertpress.evaluate.cache import ResultCache
    from bertpress.evaluate.proxy import proxy_scores
    from bertpress.recipe import load_recipe
    from bertpress.search.fitness import EvalTask, proxy_recipe
    from bertpress.train.cohort import distill_cohort

    root = args.work / "reproxy"
    search = json.loads((args.work / "search" / "search.json").read_text())
    records = {tuple(r["mapping"]): r for r in
               map(json.loads, (args.work / "search" / "evaluations.jsonl").read_text().splitlines())}
    mappings = list(dict.fromkeys(tuple(m) for m in arms_of(args).values()))
    label = {m: "-".join(map(str, m)) for m in mappings}
    base = load_recipe(lms.REPO / RECIPE).to_dict()
    tasks = [EvalTask(key=label[m], mapping=m, recipe=base, proxy=search["search"]["proxy"]) for m in mappings]
    out = {m: root / "students" / label[m] for m in mappings}
    path = root / "scores.json"
    scores = json.loads(path.read_text()) if path.is_file() else {"students": {}, "candidates": {}}
    todo = [t for t in tasks if not (out[t.mapping] / "bertpress.json").is_file()]
    if todo:
        start = time.perf_counter()
        results = distill_cohort([proxy_recipe(t, out[t.mapping]) for t in todo], overwrite=True)
        share = (time.perf_counter() - start) / len(todo)
        for t, r in zip(todo, results, strict=True):
            scores["students"][label[t.mapping]] = {"distill_loss": r.summary["final"].get("loss"),
                                                    "search_distill_loss": records[t.mapping]["distill_loss"],
                                                    "distill_s": round(share, 1)}
        atomic_write_json(path, scores)
    cache = ResultCache(SAVED / "reproxy-cache")
    for name, (names, overrides) in CANDIDATES.items():
        done = scores["candidates"].setdefault(name, {"tasks": list(names), "overrides": list(overrides),
                                                      "arms": {}})["arms"]
        for m in mappings:
            if label[m] in done:
                continue
            start = time.perf_counter()
            s = proxy_scores(out[m] / "student", tasks=names, overrides=overrides, cache=cache)
            done[label[m]] = {**s, "seconds": round(time.perf_counter() - start, 1)}
            atomic_write_json(path, scores)
            print(f"{name} {label[m]}: {s['fitness']:.2f} ({done[label[m]]['seconds']:.0f} s)", flush=True)


def full_scores(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model label: each task's runs by seed, each seed's average over TASKS, their mean and std."""
    out = {}
    for row in evaluation["models"]:
        runs = {t: {r["seed"]: r["metrics"]["score"] for r in row["tasks"][t]["runs"]} for t in TASKS}
        seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
        by_seed = [statistics.fmean(runs[t][s] for t in TASKS) for s in seeds]
        zs = row["tasks"].get("stsb-zeroshot")
        out[row["label"]] = {"runs": runs, "seeds": seeds, "by_seed": by_seed, "average": statistics.fmean(by_seed),
                             "std": statistics.stdev(by_seed) if len(by_seed) > 1 else 0.0,
                             "tasks": {t: statistics.fmean(runs[t].values()) for t in TASKS},
                             "zeroshot": zs["mean"]["score"] if zs else None}
    return out


def reproxy_signals(reproxy: dict[str, Any] | None, labels: list[str]) -> dict[str, list[float]]:
    """Each candidate proxy's fitness per arm label (the mean over its seeds) and, with several seeds, the first
    seed's alone: what the candidate would give at a third of the fine-tuning cost."""
    out: dict[str, list[float]] = {}
    for name, c in (reproxy or {}).get("candidates", {}).items():
        arms = c["arms"]
        if not all(x in arms for x in labels):
            continue
        seeds = len(arms[labels[0]].get("fitness_by_seed", [0]))
        out[f"{name}, {seeds} seed{'s' * (seeds > 1)}"] = [arms[x]["fitness"] for x in labels]
        if seeds > 1:
            out[f"{name}, 1 seed"] = [arms[x]["fitness_by_seed"][0] for x in labels]
    return out


def noise_ceiling(truth: list[float], sigma: float, draws: int = 20_000, seed: int = 0) -> dict[str, float]:
    """The Spearman rho a perfect proxy would reach against a full evaluation measured with seed noise ``sigma``:
    the arms' true averages are taken as ``truth``, each draw adds N(0, sigma) to them and ranks the result against
    ``truth``; mean and 10th-90th percentiles over the draws."""
    import numpy as np
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    t = np.asarray(truth, dtype=float)
    rho = np.array([spearmanr(t, t + rng.normal(0.0, sigma, t.size))[0] for _ in range(draws)])
    return {"sigma": sigma, "mean": float(rho.mean()), "p10": float(np.percentile(rho, 10)),
            "p90": float(np.percentile(rho, 90))}


def analyse(arms: dict[str, list[int]], records: dict[str, dict[str, Any]], full: dict[str, dict[str, Any]],
            heldout: dict[str, float], reproxy: dict[str, Any] | None = None) -> dict[str, Any]:
    """Searched vs the best heuristic (paired over task x seed runs and over seed averages) and the rank
    correlation of each proxy signal (the search's, cheap alternatives, the ``reproxy`` candidates) with the full
    average over the seeds every arm ran, with the ceiling the full evaluation's own seed noise puts on it.
    ``records``, ``full`` and ``heldout`` are keyed by the mapping label ("2-3-4-6")."""
    from bertpress.evaluate.stats import paired_test, rank_correlation

    label = {n: "-".join(map(str, m)) for n, m in arms.items()}
    best_h = max(HEURISTICS, key=lambda n: full[label[n]]["average"])
    s, h = full[label["searched"]], full[label[best_h]]

    def pairs(x: dict[str, Any]) -> list[float]:
        return [x["runs"][t][seed] for t in TASKS for seed in s["seeds"]]

    comparison = None
    if label["searched"] != label[best_h]:
        comparison = {"heuristic": best_h, "by_run": paired_test(pairs(s), pairs(h)),
                      "by_seed_average": paired_test(s["by_seed"], h["by_seed"]) if len(s["seeds"]) > 1 else None}
    labels = sorted(set(label.values()))
    common = sorted(set.intersection(*(set(full[x]["seeds"]) for x in labels)))
    truth = [statistics.fmean(full[x]["by_seed"][full[x]["seeds"].index(seed)] for seed in common) for x in labels]
    truth_stsb = [statistics.fmean(full[x]["runs"]["stsb"][seed] for seed in common) for x in labels]
    tasks = sorted({t for x in labels for t in (records[x]["scores"] or {})})
    signals = {"proxy fitness": [records[x]["fitness"] for x in labels],
               **{f"proxy {t}": [records[x]["scores"][t] for x in labels] for t in tasks},
               "proxy held-out loss (negated)": [-records[x]["distill_loss"] for x in labels],
               "final held-out loss (negated)": [-heldout[x] for x in labels],
               "zero-shot STS-B after the final distillation": [full[x]["zeroshot"] for x in labels],
               **reproxy_signals(reproxy, labels)}
    correlation = {k: rank_correlation(v, truth) for k, v in signals.items() if None not in v}
    spread = [full[x]["std"] ** 2 for x in labels if len(full[x]["seeds"]) > 1]
    ceiling = noise_ceiling(truth, statistics.fmean(spread) ** 0.5) if spread else None
    equals = [n for n in HEURISTICS if label[n] == label["searched"]]
    return {"best_heuristic": best_h, "searched_is_a_heuristic": bool(equals), "searched_equals": equals,
            "comparison": comparison,
            "correlation": correlation, "correlation_seeds": common, "labels": labels, "noise_ceiling": ceiling,
            "truth": dict(zip(labels, truth, strict=True)),
            "proxy_fitness": {x: records[x]["fitness"] for x in labels}, "truth_stsb": dict(zip(labels, truth_stsb, strict=True))}


def report_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    from bertpress.atomic import atomic_write_json, atomic_write_text

    search = json.loads((args.work / "search" / "search.json").read_text())
    records = {"-".join(map(str, r["mapping"])): r for r in
               map(json.loads, (args.work / "search" / "evaluations.jsonl").read_text().splitlines())}
    arms = arms_of(args)
    final = {}
    for mapping in dict.fromkeys(tuple(m) for m in arms.values()):
        s = json.loads((_arm_dir(args, list(mapping)) / "bertpress.json").read_text())
        final["-".join(map(str, mapping))] = {"heldout": s["final"]["loss"], "steps": s["steps"],
                                              "tokens": s["tokens_seen"], "cohort": s.get("cohort")}
    passes = [json.loads((args.work / "eval" / g / "results.json").read_text()) for g in ("compare", "ranks")]
    path = args.work / "reproxy" / "scores.json"
    reproxy = json.loads(path.read_text()) if path.is_file() else None
    evaluation = {"models": [row for e in passes for row in e["models"]]}
    full = full_scores(evaluation)
    cost = {}
    for key in ("solo", "cohort"):
        c = json.loads((args.work / "cost" / key / "search.json").read_text())
        recs = [json.loads(x) for x in (args.work / "cost" / key / "evaluations.jsonl").read_text().splitlines()]
        cost[key] = {"evaluations": len(recs), "mean_seconds": c["evaluations"]["mean_seconds"],
                     "distill_s": statistics.fmean(r["details"]["distill_s"] for r in recs),
                     "proxy_s": statistics.fmean(r["details"]["proxy_s"] for r in recs),
                     "threads": c["threads_per_worker"], "proxy": c["search"]["proxy"],
                     "fitness": {"-".join(map(str, r["mapping"])): r["fitness"] for r in recs}}
    cost["same_fitness"] = cost["solo"]["fitness"] == cost["cohort"]["fitness"]
    result = {
        "question": "Where no mapping is privileged, does the searched mapping beat the uniform, last and skip "
                    "heuristics beyond noise, and does the proxy rank mappings as the full evaluation does?",
        "machine": lms.machine(), "recipe": RECIPE, "cost": cost,
        "search": {k: search[k] for k in ("best", "baselines", "margin_over_baselines", "space", "evaluations",
                                          "generations", "wall_time_s", "backend", "threads_per_worker", "search")},
        "arms": arms, "proxy": {lab: {k: records[lab][k] for k in ("fitness", "scores", "distill_loss")}
                                for lab in final},
        "final_distillation": final, "full_evaluation": full,
        "full_eval_settings": {t: evaluation["models"][0]["tasks"][t]["settings"] for t in TASKS},
        "reproxy": reproxy,
        "analysis": analyse(arms, records, full, {k: v["heldout"] for k, v in final.items()}, reproxy),
        "phases": journal,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.results / f"{OUT}.json", result)
    atomic_write_text(args.results / f"{OUT}.md", markdown(result))
    plot(result, args.results / f"{OUT}.png")
    print(f"written: {args.results}/{OUT}.{{json,md,png}}")


def _f(x: float | None, d: int = 1) -> str:
    return "–" if x is None else f"{x:.{d}f}"


def markdown(r: dict[str, Any]) -> str:
    s, m, c, a = r["search"], r["machine"], r["cost"], r["analysis"]
    ev = s["evaluations"]
    proxy = c["solo"]["proxy"]
    out = ["# Layer mapping search with an unprivileged student", "",
           f"Packaged all-MiniLM-L6-v2 teacher (6 layers) -> 4-layer, 256-wide student extracted by ETD importance "
           f"(`{r['recipe']}`, `tinybert` objective on attention probabilities). {s['space']['description']}.", "",
           f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; the load average of each phase is listed "
           "at the end.", "", "## 1. Cost of an evaluation", "",
           f"The three heuristic mappings scored with the proxy ({proxy['steps']} distillation steps x "
           f"{proxy['batch_size']} blocks, then fine-tuning on {', '.join(proxy['tasks'])}): solo, one after "
           "another, and as one cohort sharing the teacher's forward.", "",
           "| backend | threads | distillation s | proxy fine-tuning s | s per evaluation |", "|---|---|---|---|---|"]
    for key in ("solo", "cohort"):
        x = c[key]
        out.append(f"| {key} | {x['threads']} | {x['distill_s']:.0f} | {x['proxy_s']:.0f} | "
                   f"{x['mean_seconds']:.0f} |")
    out += ["", f"Fitness identical under both backends: {'yes' if c['same_fitness'] else '**no**'} "
            f"({', '.join(f'{k} {v:.4f}' for k, v in c['solo']['fitness'].items())}). Cohort / solo seconds per "
            f"evaluation: {c['cohort']['mean_seconds'] / c['solo']['mean_seconds']:.2f}x.", "",
            "## 2. Search", "",
            f"{ev['distinct']} distinct mappings evaluated ({100 * s['space']['covered']:.0f}% of the space, "
            f"{ev['failed']} failed), wall time {s['wall_time_s'] / 60:.1f} min ({s['backend']}, "
            f"{ev['mean_seconds']:.0f} s per evaluation). Best: **{s['best']['mapping']}** (proxy fitness "
            f"{s['best']['fitness']:.2f}; " + ", ".join(f"{n} {s['baselines'][n]['mapping']} "
                                                       f"{s['baselines'][n]['fitness']:.2f}" for n in HEURISTICS) +
            ").", "", "## 3. Full evaluation", ""]
    f0 = next(iter(r["final_distillation"].values()))
    st = r["full_eval_settings"]
    caps = ", ".join(f"{t.upper()} {st[t]['max_train_examples'] or 'all'}" for t in TASKS)
    seeds = {lab: f["seeds"] for lab, f in r["full_evaluation"].items()}
    compare = {"-".join(map(str, r["arms"][n])) for n in ("searched", *HEURISTICS)}
    rank_seeds = sorted({tuple(v) for k, v in seeds.items() if k not in compare})
    out += [f"Each arm distilled for {f0['steps']} steps ({f0['tokens']:,} tokens, one cohort), then fine-tuned by "
            f"`bertpress evaluate` with seeds {seeds[next(iter(compare))]} for the searched mapping and the heuristics, "
            f"{', '.join(map(str, map(list, rank_seeds))) or '-'} for the other arms (train examples: {caps}; lr {st['rte']['lr']:g}, "
            f"{st['rte']['epochs']:g} epochs) and scored on the dev sets. Average = mean over the five tasks; ± = "
            "sample std of the per-seed averages.", "",
            "| arm | mapping | proxy fitness | final held-out loss | " + " | ".join(t.upper() for t in TASKS) +
            " | average | zero-shot STS-B |", "|---|---|---|---|" + "---|" * len(TASKS) + "---|---|"]
    for name, mapping in r["arms"].items():
        lab = "-".join(map(str, mapping))
        f = r["full_evaluation"][lab]
        fitness = r["proxy"][lab]["fitness"]
        out.append(f"| {name} | {mapping} | {_f(fitness, 2)} | {r['final_distillation'][lab]['heldout']:.4f} | " +
                   " | ".join(_f(f["tasks"][t]) for t in TASKS) + f" | {f['average']:.2f} ± {f['std']:.2f} | "
                   f"{_f(f['zeroshot'])} |")
    out += ["", "## 4. Searched vs the best heuristic", ""]
    if a["searched_equals"]:
        out.append(f"The searched mapping {r['arms']['searched']} is the {' and '.join(a['searched_equals'])} "
                   "heuristic's: the search found no mapping the heuristics miss.")
    if a["comparison"] is None:
        out.append(f"It is also the best heuristic on the full evaluation ({a['best_heuristic']}): nothing to "
                   "compare.")
    else:
        cmp = a["comparison"]
        br, bs = cmp["by_run"], cmp["by_seed_average"]
        verdict = "beyond noise" if br["beyond_noise"] else "**not** beyond noise"
        out.append(f"Best heuristic on the full evaluation: {cmp['heuristic']}. Searched minus it, paired over the "
                   f"{br['n']} (task, seed) runs: {br['mean_diff']:+.2f} ± {br['std_diff']:.2f} points, "
                   f"{br['wins']} wins / {br['losses']} losses, paired t-test p = {br['p_value']:.3f}: {verdict} "
                   f"(alpha {br['alpha']})." + ("" if bs is None else
                   f" Over the {bs['n']} per-seed averages: {bs['mean_diff']:+.2f} ± {bs['std_diff']:.2f}, "
                   f"p = {bs['p_value']:.3f}."))
    out += ["", "## 5. Does the proxy rank mappings like the full evaluation?", "",
            f"Rank correlation with the full average (seeds {a['correlation_seeds']}, which every arm ran) over the "
            f"{len(a['labels'])} distinct arm mappings:", "",
            "| signal | Spearman rho | p | Kendall tau | p |", "|---|---|---|---|---|"]
    for k, v in a["correlation"].items():
        out.append(f"| {k} | {v['spearman']:+.2f} | {v['spearman_p']:.3f} | {v['kendall']:+.2f} | "
                   f"{v['kendall_p']:.3f} |")
    ceiling = a.get("noise_ceiling")
    if ceiling:
        out += ["", f"Ceiling set by the full evaluation's own noise: with the per-seed averages' std of the arms that "
                f"ran several seeds (pooled: {ceiling['sigma']:.2f} points), a proxy that knew every arm's true "
                f"average would reach Spearman {ceiling['mean']:+.2f} on average (10th-90th percentile "
                f"{ceiling['p10']:+.2f} to {ceiling['p90']:+.2f}) against one seed of the full evaluation. With 8 "
                "arms, rho must exceed about +0.74 to be significant at 0.05."]
    if r.get("reproxy"):
        out += ["", *reproxy_markdown(r["reproxy"], a)]
    out += ["", *lms.phase_table(r["phases"])]
    out += ["", "Reproduce: `python benchmarks/lms/unprivileged.py all --work /work/runs/lms-4x256` (phases `cost`, "
            "`search`, `final`, `evaluate`, `reproxy`, `report`; each resumes).", ""]
    return "\n".join(out)


def reproxy_markdown(rp: dict[str, Any], a: dict[str, Any]) -> list[str]:
    """Section 6: the candidate proxies, their cost and their rank correlation with the full evaluation."""
    labels = a["labels"]
    st = rp["students"]
    gap = max(abs(st[x]["distill_loss"] / st[x]["search_distill_loss"] - 1) for x in labels)
    distill = statistics.fmean(st[x]["distill_s"] for x in labels)
    out = ["## 6. Better proxies", "",
           "The arms' proxy students rebuilt as in the search (100 steps x 16 blocks, one cohort of the 8; held-out "
           f"loss within {gap:.1e} (relative) of the search's records, whose cohorts had other members), then scored "
           "by each candidate: "
           "the STS-B fine-tuning the full average moves with, at 6 epochs instead of the proxy mode's 2. "
           f"Distillation: {distill:.0f} s per student (cohort share).", "",
           "| candidate | settings (on top of the proxy mode's 64 tokens, lr 1e-4) | scoring s per arm | s per "
           "evaluation | Spearman rho | p | Kendall tau | p |", "|---|---|---|---|---|---|---|---|"]
    for name, c in rp["candidates"].items():
        if not all(x in c["arms"] for x in labels):
            continue
        secs = statistics.fmean(c["arms"][x]["seconds"] for x in labels)
        for key, v in a["correlation"].items():
            if key.startswith(name + ","):
                several = len(c["arms"][labels[0]].get("fitness_by_seed", [0]))
                first = key.endswith(", 1 seed") and several > 1  # the first seed of the runs: 1/n of the cost
                k = 1 / several if first else 1
                how = ", ".join(c["overrides"]) + (" (its first seed alone)" if first else "")
                out.append(f"| {key} | {how} | {k * secs:.0f} | {distill + k * secs:.0f} | "
                           f"{v['spearman']:+.2f} | {v['spearman_p']:.3f} | {v['kendall']:+.2f} | {v['kendall_p']:.3f} |")
    rank = sorted(labels, key=lambda x: -a["truth"][x])
    for name, c in rp["candidates"].items():
        if all(x in c["arms"] for x in labels):
            pick = max(labels, key=lambda x: c["arms"][x]["fitness"])
            out += ["", f"{name}: its best arm is {pick}, number {rank.index(pick) + 1} of {len(labels)} on the full "
                    f"average (best: {rank[0]}); the search's proxy picked {max(labels, key=a['proxy_fitness'].get)}."]
    seeds = a["correlation_seeds"]
    out += ["", "Per arm (candidates: fine-tuned STS-B, mean of Pearson and Spearman x100, mean ± std over seeds):", "",
            f"| mapping | full average, seeds {seeds} | full STS-B, seeds {seeds} | " + " | ".join(rp["candidates"])
            + " |",
            "|---|---|---|" + "---|" * len(rp["candidates"])]
    for x in labels:
        cells = [f"{c['arms'][x]['fitness']:.1f}" + (f" ± {c['arms'][x]['fitness_std']:.1f}"
                                                     if "fitness_std" in c["arms"][x] else "")
                 if x in c["arms"] else "–" for c in rp["candidates"].values()]
        out.append(f"| {x} | {a['truth'][x]:.2f} | {a['truth_stsb'][x]:.1f} | " + " | ".join(cells) + " |")
    return out


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    full = r["full_evaluation"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    names: dict[str, str] = {}
    for n, m in r["arms"].items():  # a mapping that is several arms is named after all of them
        lab = "-".join(map(str, m))
        names[lab] = f"{names[lab]}={n}" if lab in names else n
    corr = r["analysis"]["correlation"]["proxy fitness"]
    common = r["analysis"]["correlation_seeds"]
    for lab in r["analysis"]["labels"]:
        x, f = r["proxy"][lab]["fitness"], full[lab]
        y = statistics.fmean(f["by_seed"][f["seeds"].index(seed)] for seed in common)
        a.plot(x, y, "o")
        a.annotate(f"{names[lab]} {lab}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    a.set(xlabel="proxy fitness", ylabel=f"full average, seeds {common} (every arm ran them)",
          title=f"proxy vs full: Spearman {corr['spearman']:+.2f}")
    a.grid(alpha=0.3)
    labels = list(names)
    b.bar(range(len(labels)), [full[x]["average"] for x in labels], yerr=[full[x]["std"] for x in labels],
          capsize=3, color=["tab:red" if "searched" in names[x].split("=") else "tab:blue"
                            if set(names[x].split("=")) & set(HEURISTICS) else "tab:gray" for x in labels])
    b.set_xticks(range(len(labels)), [f"{names[x]}\n{x}" for x in labels], fontsize=7)
    lo = min(full[x]["average"] - full[x]["std"] for x in labels)
    b.set(ylabel="full average", title="arms (red: searched, blue: heuristics)", ylim=(max(0, lo - 3), None))
    b.grid(alpha=0.3, axis="y")
    lms.save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["cost", "search", "final", "evaluate", "reproxy", "report", "all", "_distil",
                                     "_reproxy"])
    p.add_argument("--work", type=Path, default=Path("/work/runs/lms-4x256"), help="where runs go (outside the repo)")
    p.add_argument("--search-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="recipe override for search-mapping (repeatable)")
    p.add_argument("--arms", type=int, default=ARMS, help="distinct mappings evaluated fully (>= 8)")
    p.add_argument("--final-steps", type=int, default=300)
    p.add_argument("--final-batch-size", type=int, default=16)
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[1, 2, 3],
                   help="fine-tuning seeds of the searched mapping and the heuristics")
    p.add_argument("--rank-seeds", type=int, nargs="+", default=[1],
                   help="fine-tuning seeds of the other arms (the rank correlation uses the seeds all arms share)")
    p.add_argument("--eval-set", action="append", default=["sst2.max_train_examples=20000"],
                   metavar="[TASK.]KEY=VALUE", help="fine-tuning override for bertpress evaluate (repeatable; default: "
                                                    "the task recipes' full train sets, SST-2 capped at 20,000)")
    p.add_argument("--cache-dir", type=Path, default=SAVED / "eval-cache", help="evaluation cache (default: kept "
                                                                               "in the repository)")
    p.add_argument("--results", type=Path, default=lms.RESULTS, help="where the report is written")
    args = p.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.phase in ("_distil", "_reproxy"):
        {"_distil": _distil, "_reproxy": _reproxy}[args.phase](args)
        return
    restore(args)
    lms.JOURNAL = args.work / "journal.json"
    journal = json.loads(lms.JOURNAL.read_text()) if lms.JOURNAL.is_file() else {}
    journal["argv"] = shlex.join(["python", "benchmarks/lms/unprivileged.py", *sys.argv[1:]])
    phases = ["cost", "search", "final", "evaluate", "reproxy", "report"] if args.phase == "all" else [args.phase]
    steps = {"cost": cost_phase, "search": search_phase, "final": final_phase, "evaluate": evaluate_phase,
             "reproxy": reproxy_phase, "report": report_phase}
    for phase in phases:
        steps[phase](args, journal)


if __name__ == "__main__":
    main()
