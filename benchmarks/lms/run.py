"""Layer mapping search benchmark (issue 5): does the searched mapping beat uniform, last and skip?

Phases (each re-runnable; finished work is reused, an interrupted search or distillation is resumed):

  search    bertpress search-mapping recipes/search-3l.yaml (packaged 6-layer teacher -> 3-layer student,
            proxy setting on SST-2/MRPC/STS-B), the budget of the recipe's search: section
  final     a longer distillation (the same budget for all) with the searched mapping and with uniform, last, skip
  evaluate  bertpress evaluate of the four students on RTE, MRPC, STS-B and CoLA dev (full dev sets)
  report    benchmarks/lms/results/lms.{json,md,png}

    python benchmarks/lms/run.py all --work /work/runs/lms [--final-steps 400 --final-batch-size 16]

Every command run is recorded verbatim with its wall time and the machine's load average while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
RECIPE = "recipes/search-3l.yaml"
BASELINES = ("uniform", "last", "skip")
TASKS = ("rte", "mrpc", "stsb", "cola")


class LoadSampler:
    """The 1-minute load average, sampled every ``every`` seconds while a command runs."""

    def __init__(self, every: float = 20.0) -> None:
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(s), 2), "mean": round(sum(s) / len(s), 2), "max": round(max(s), 2),
                "samples": len(s)}


def run(cmd: list[str], log: Path, journal: dict[str, Any], key: str) -> float:
    """Run ``cmd`` from the repository root (output to ``log``); journal its command, time, load and exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    shown = shlex.join(cmd)
    print(f"$ {shown}", flush=True)
    start = time.time()
    with LoadSampler() as load, log.open("a") as out:
        out.write(f"\n$ {shown}\n")
        out.flush()
        code = subprocess.call(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.time() - start
    entry = {"command": shown, "seconds": round(seconds, 1), "load_1min": load.summary(), "exit_code": code,
             "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    save_journal(journal, key, entry)
    if code != 0:
        sys.exit(f"failed ({code}): {shown}; see {log}")
    return seconds


JOURNAL: Path = Path()


def save_journal(journal: dict[str, Any], key: str, entry: dict[str, Any]) -> None:
    """Add ``key`` to the journal file, keeping what other phases running beside this one wrote meanwhile."""
    from bertpress.atomic import atomic_write_json

    if JOURNAL.is_file():
        journal.update({k: v for k, v in json.loads(JOURNAL.read_text()).items() if k != "argv"})
    journal[key] = entry
    atomic_write_json(JOURNAL, journal)


def search_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    out = args.work / "search"
    if (out / "best_mapping.yaml").is_file():
        print(f"search done: {out}")
        return
    cmd = ["bertpress", "search-mapping", RECIPE, "--output-dir", str(out)]
    for text in args.search_set:
        cmd += ["--set", text]
    if (out / "state.json").is_file():
        cmd.append("--resume")
    run(cmd, args.work / "logs" / "search.log", journal, "search")


def mappings(args: argparse.Namespace) -> dict[str, list[int]]:
    s = json.loads((args.work / "search" / "search.json").read_text())
    return {"searched": s["best"]["mapping"], **{n: s["baselines"][n]["mapping"] for n in BASELINES}}


def final_dirs(args: argparse.Namespace) -> dict[str, Path]:
    """Student directory per arm; the searched arm reuses a baseline's student when the mappings are equal."""
    maps = mappings(args)
    out = {n: args.work / "final" / n for n in BASELINES}
    same = next((n for n in BASELINES if maps[n] == maps["searched"]), None)
    out["searched"] = out[same] if same else args.work / "final" / "searched"
    return {"searched": out["searched"], **{n: out[n] for n in BASELINES}}


def final_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    arms = args.arms or ["searched", *BASELINES]
    dirs = final_dirs(args) if "searched" in arms else {n: args.work / "final" / n for n in BASELINES}
    for name, folder in dirs.items():
        if name not in arms:
            continue
        if (folder / "bertpress.json").is_file():
            print(f"{name}: done ({folder})")
            continue
        source = ["--mapping-from", str(args.work / "search")] if name == "searched" else \
            ["--set", f"mapping.strategy={name}"]
        cmd = ["bertpress", "distill", RECIPE, "--output-dir", str(folder), "--max-steps", str(args.final_steps),
               *source, "--set", f"train.batch_size={args.final_batch_size}", "--set", "train.eval_every=100",
               "--set", "train.save_every=100"]
        for text in args.final_set:
            cmd += ["--set", text]
        if folder.is_dir() and any(folder.iterdir()):
            cmd.append("--resume")
        run(cmd, args.work / "logs" / f"final-{name}.log", journal, f"final-{name}")


def evaluate_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    dirs = final_dirs(args)
    labels = {n: f"{n} {m}".replace(" ", "") for n, m in mappings(args).items()}
    models = [f"{labels[n]}={d}" for n, d in dirs.items()]
    cmd = ["bertpress", "evaluate", *models, "--tasks", ",".join(TASKS), "--seeds", *map(str, args.eval_seeds),
           "--no-latency", "--no-progress", "--output-dir", str(args.work / "eval"),
           "--cache-dir", str(args.work / "eval-cache")]
    for text in args.eval_set:
        cmd += ["--set", text]
    run(cmd, args.work / "logs" / "evaluate.log", journal, "evaluate")


def machine() -> dict[str, Any]:
    import torch

    from bertpress.evaluate.latency import cpu_name

    cpu = cpu_name()
    mem = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), None)
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "memory_mib": mem, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads_default": torch.get_num_threads(),
            "platform": platform.platform()}


def report_phase(args: argparse.Namespace, journal: dict[str, Any]) -> None:
    from bertpress.atomic import atomic_write_json, atomic_write_text

    search = json.loads((args.work / "search" / "search.json").read_text())
    maps = mappings(args)
    dirs = final_dirs(args)
    final = {}
    for name, folder in dirs.items():
        s = json.loads((folder / "bertpress.json").read_text())
        final[name] = {"mapping": s["mapping"], "heldout": s["final"], "steps": s["steps"],
                       "tokens": s["tokens_seen"], "train_time_s": s["train_time_s"], "dir": str(folder)}
    evaluation = json.loads((args.work / "eval" / "results.json").read_text())
    rows = {}
    for row in evaluation["models"]:
        name = row["label"].split("[")[0]
        rows[name] = {"average": row["average"],
                      "tasks": {t: {"score": r["mean"]["score"], "std": r["std"]["score"], "n": r["n"]}
                                for t, r in row["tasks"].items()}}
    proxy = {"searched": search["best"], **{n: search["baselines"][n] for n in BASELINES}}
    result = {
        "question": "Does the layer mapping found by the search beat the uniform, last and skip heuristics?",
        "machine": machine(),
        "recipe": RECIPE,
        "search": {k: search[k] for k in ("best", "baselines", "margin_over_baselines", "space", "evaluations",
                                          "generations", "wall_time_s", "workers", "threads_per_worker", "search")},
        "mappings": maps,
        "proxy_fitness": {n: {"mapping": r["mapping"], "fitness": r["fitness"], "scores": r["scores"]}
                          for n, r in proxy.items()},
        "final_distillation": final,
        "full_evaluation": rows,
        "full_eval_settings": {t: evaluation["models"][0]["tasks"][t]["settings"] for t in TASKS},
        "margins_full_eval": {n: rows["searched"]["average"] - rows[n]["average"] for n in BASELINES},
        "commands": {k: v["command"] for k, v in journal.items() if isinstance(v, dict) and "command" in v},
        "phases": journal,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "lms.json", result)
    atomic_write_text(RESULTS / "lms.md", markdown(result))
    plot(result, RESULTS / "lms.png")
    print(f"written: {RESULTS}/lms.{{json,md,png}}")


def _settings(per_task: dict[str, dict[str, Any]]) -> str:
    """The fine-tuning settings of the full evaluation, per task: train-set cap, lr, epochs, length."""
    parts = []
    for task, st in per_task.items():
        cap = f"a fixed random {st['max_train_examples']:,} train examples" if st["max_train_examples"] else "full train set"
        parts.append(f"{task.upper()}: {cap}, lr {st['lr']:g}, {st['epochs']:g} epochs, {st['max_length']} tokens")
    return "; ".join(parts)


def _f(x: float | None, d: int = 2) -> str:
    return "–" if x is None else f"{x:.{d}f}"


def phase_table(journal: dict[str, Any]) -> list[str]:
    """Markdown lines: every journaled command with its wall time and the load average while it ran."""
    out = ["## Phases", "", "| phase | wall time | load avg (1 min) min / mean / max | command |", "|---|---|---|---|"]
    for key, v in journal.items():
        if isinstance(v, dict) and "command" in v:
            ld = v["load_1min"]
            out.append(f"| {key} | {v['seconds'] / 60:.1f} min | {ld['min']} / {ld['mean']} / {ld['max']} | "
                       f"`{v['command']}` |")
    return out


def markdown(r: dict[str, Any]) -> str:
    s, m = r["search"], r["machine"]
    ev = s["evaluations"]
    names = ["searched", *BASELINES]
    ph = r["phases"]
    out = ["# Layer mapping search: searched mapping vs uniform, last, skip", "",
           f"Packaged all-MiniLM-L6-v2 teacher (6 layers) -> 3-layer, 384-wide student (`{r['recipe']}`: "
           "`tinybert` objective, `select` init from teacher layers 1, 3, 5). "
           f"{s['space']['description']}.", "",
           f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mib']} MiB, torch {m['torch']}; shared with other "
           "jobs: the 1-minute load average while each phase ran is listed below.", "",
           "## 1. Proxy setting (the search's own fitness)", "",
           f"{ev['distinct']} distinct mappings evaluated ({ev['failed']} failed, {ev['retried']} retried), "
           f"{len(s['generations']) - 1} generations after the initial population of {s['search']['population']}, "
           f"{s['workers']} worker x {s['threads_per_worker']} threads; search wall time "
           f"**{s['wall_time_s'] / 60:.1f} min** (evaluations {ev['evaluation_seconds'] / 60:.1f} min, "
           f"{ev['evaluation_seconds'] / max(1, ev['this_session'] or ev['distinct']):.0f} s each). Proxy: "
           f"{s['search']['proxy']['steps']} distillation steps x {s['search']['proxy']['batch_size']} blocks on "
           f"{s['search']['proxy']['max_blocks']} sampled blocks, then proxy fine-tuning on "
           f"{', '.join(s['search']['proxy']['tasks'])} ({', '.join(s['search']['proxy']['finetune_overrides'])}).",
           "", "| mapping | layers | proxy fitness | " + " | ".join(s["search"]["proxy"]["tasks"]) + " | margin |",
           "|---|---|---|" + "---|" * len(s["search"]["proxy"]["tasks"]) + "---|"]
    best = r["proxy_fitness"]["searched"]["fitness"]
    for n in names:
        p = r["proxy_fitness"][n]
        margin = "" if n == "searched" or p["fitness"] is None else f"{best - p['fitness']:+.4f}"
        out.append(f"| {n} | {p['mapping']} | {_f(p['fitness'], 4)} | " +
                   " | ".join(_f((p["scores"] or {}).get(t)) for t in s["search"]["proxy"]["tasks"]) +
                   f" | {margin} |")
    out += ["", "## 2. Longer distillation, full evaluation (dev sets)", ""]
    f0 = r["final_distillation"]["searched"]
    out += [f"Each student distilled for {f0['steps']} steps ({f0['tokens']:,} tokens, the same for all), then "
            f"fine-tuned with `bertpress evaluate` ({_settings(r['full_eval_settings'])}) and scored on the full dev "
            "sets. Scores x100: RTE accuracy, MRPC mean of F1 and accuracy, STS-B mean of Pearson and Spearman, CoLA "
            "Matthews.", "",
            "| mapping | layers | held-out distil. loss | " + " | ".join(t.upper() for t in TASKS) +
            " | average | margin |", "|---|---|---|" + "---|" * len(TASKS) + "---|---|"]
    for n in names:
        row, fd = r["full_evaluation"][n], r["final_distillation"][n]
        margin = "" if n == "searched" else f"{r['margins_full_eval'][n]:+.2f}"
        out.append(f"| {n} | {fd['mapping']} | {_f(fd['heldout'].get('loss'), 4)} | " +
                   " | ".join(_f(row["tasks"][t]["score"]) for t in TASKS) + f" | {_f(row['average'])} | {margin} |")
    seeds = {v["n"] for row in r["full_evaluation"].values() for v in row["tasks"].values()}
    out += ["", f"Fine-tuning seeds per task: {', '.join(map(str, sorted(seeds)))}.", "", *phase_table(ph)]
    out += ["", "Reproduce: `python benchmarks/lms/run.py all --work /work/runs/lms` (phases `search`, `final`, "
            "`evaluate`, `report`; each resumes).", ""]
    return "\n".join(out)


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    gens = r["search"]["generations"]
    x = [g["generation"] for g in gens]
    a.plot(x, [g["best"] for g in gens], "o-", color="tab:red", label="best so far")
    a.plot(x, [g["mean"] for g in gens], "s--", color="tab:blue", label="population mean")
    for (n, color) in zip(BASELINES, ("tab:green", "tab:purple", "tab:orange"), strict=True):
        p = r["proxy_fitness"][n]
        if p["fitness"] is not None:
            a.axhline(p["fitness"], color=color, linestyle=":", label=f"{n} {p['mapping']}")
    a.set(xlabel="generation", ylabel="proxy fitness (mean of SST-2, MRPC, STS-B)", xticks=x,
          title=f"search: best {r['mappings']['searched']}")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    names = ["searched", *BASELINES]
    width = 0.2
    cols = [*TASKS, "average"]
    for i, n in enumerate(names):
        row = r["full_evaluation"][n]
        vals = [row["tasks"][t]["score"] for t in TASKS] + [row["average"]]
        b.bar([j + (i - 1.5) * width for j in range(len(cols))], vals, width, label=f"{n} {r['mappings'][n]}")
    b.set_xticks(range(len(cols)), [c.upper() if c != "average" else "avg" for c in cols])
    b.set(ylabel="dev score", title="longer distillation, full evaluation")
    b.legend(fontsize=8)
    b.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` as a whole (through a temporary file) and close it."""
    import matplotlib.pyplot as plt

    from bertpress.atomic import atomic_write_bytes

    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()


def main() -> None:
    global JOURNAL
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["search", "final", "evaluate", "report", "all"])
    p.add_argument("--work", type=Path, default=Path("/work/runs/lms"), help="where runs go (outside the repo)")
    p.add_argument("--search-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="recipe override for search-mapping, e.g. search.workers=2 (repeatable)")
    p.add_argument("--final-steps", type=int, default=400)
    p.add_argument("--arms", type=lambda t: t.split(","), metavar="A,B",
                   help="final phase: only these arms (searched, uniform, last, skip), e.g. the baselines while the "
                        "search still runs")
    p.add_argument("--final-batch-size", type=int, default=16)
    p.add_argument("--final-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="recipe override for the final distillations (repeatable)")
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[1])
    p.add_argument("--eval-set", action="append", default=[], metavar="[TASK.]KEY=VALUE",
                   help="fine-tuning override for bertpress evaluate, e.g. max_train_examples=1500 (repeatable)")
    args = p.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    JOURNAL = args.work / "journal.json"
    journal = json.loads(JOURNAL.read_text()) if JOURNAL.is_file() else {}
    journal["argv"] = shlex.join(["python", "benchmarks/lms/run.py", *sys.argv[1:]])
    phases = ["search", "final", "evaluate", "report"] if args.phase == "all" else [args.phase]
    for phase in phases:
        {"search": search_phase, "final": final_phase, "evaluate": evaluate_phase, "report": report_phase}[phase](
            args, journal)


if __name__ == "__main__":
    main()
