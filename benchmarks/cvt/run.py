"""CVT benchmark (issue 18): is a distilled student worth it for NER, or does a Cross-View Training tagger do as well,
cheaper?

CoNLL-2003 (full training set), dev and test entity F1 (seqeval), parameters, CPU latency per sentence and training
cost for four models:

* ``bilstm``: the supervised BiLSTM-CNN tagger (``recipes/baselines/cvt-conll.yaml`` with ``semi_supervised: false``);
* ``cvt``: the same tagger trained with Cross-View Training on Wikipedia sentences (the recipe as shipped);
* ``teacher``: the packaged all-MiniLM-L6-v2, fine-tuned with the default ``conll2003`` task recipe;
* ``student``: the best distilled 3-layer student there is (``tinybert-top-probs`` of the quality benchmark, rebuilt
  bit for bit by ``benchmarks/quality/run.py --only tinybert-top-probs``), fine-tuned the same way.

Encoders are fine-tuned with 3 seeds (mean and sample std); each tagger is one training run (seed 0: another seed
costs another hour). Phases, each skipped when already done and resumable when interrupted (the taggers checkpoint
every 1000 steps; fine-tuning results are cached in ``results/cache``, committed)::

    python benchmarks/cvt/run.py [--phases cvt bilstm student encoders evaluate] [--out-dir runs/cvt-bench]

Each tagger phase writes its scores and training cost to ``results/phases/NAME.json``; the encoders phase fine-tunes
teacher and student for every seed into the cache (scores in ``results/phases/encoders.json``); the evaluate phase
(which needs the taggers on disk) scores from the cache, times every model and writes
``benchmarks/cvt/results/results.{json,md,png}`` (the ``bertpress evaluate`` report, every model timed side by side
in one run; the plot is F1 against CPU ms per sentence). Taggers and the student live under ``--out-dir`` (not
committed: a new session retrains them from the recipe and seed; the student comes back bit for bit, the taggers
only within one session's machine state, see README).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from bertpress.atomic import atomic_write_json
from bertpress.baselines.cvt import load_config
from bertpress.baselines.cvt_train import train_cvt
from bertpress.data.tasks.files import default_data_dir
from bertpress.errors import BertpressError
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.compare import run_compare
from bertpress.evaluate.latency import conditions
from bertpress.evaluate.report import write_report
from bertpress.evaluate.settings import FinetuneSettings, resolve_settings
from bertpress.evaluate.suite import ModelSpec, evaluate_model, model_spec
from bertpress.evaluate.tasks import TaskData, load_task
from bertpress.models.teacher import PACKAGED_TEACHER

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
RECIPE = ROOT / "recipes" / "baselines" / "cvt-conll.yaml"
CORPUS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"
STUDENT = "tinybert-top-probs"
SEEDS = [1, 2, 3]
PHASES = ("cvt", "bilstm", "student", "encoders", "evaluate")


def tagger(name: str, out_dir: Path) -> Path:
    """Train (or resume, or reuse) one tagger from the shipped recipe; returns its run directory."""
    overrides = [f"output_dir={json.dumps(str(out_dir / name))}", f"unlabeled={json.dumps([str(default_data_dir() / CORPUS)])}"]
    if name == "bilstm":
        overrides += ["semi_supervised=false", "name=bilstm-conll"]
    config = load_config(RECIPE, overrides)
    run = Path(config.output_dir)
    if not (run / "tagger" / "cvt.json").is_file():
        resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step-*"))
        print(f"[cvt] {name}: {'resuming' if resume else 'starting'} {run}", flush=True)
        train_cvt(config, resume=resume, overwrite=not resume, progress=False)
    record_tagger(name, run)
    return run


def record_tagger(name: str, run: Path) -> None:
    """The tagger's dev/test scores, size and training cost in ``results/phases/NAME.json`` (committed: the tagger
    itself, 70 MB, stays under --out-dir; a new session retrains it from the recipe and seed)."""
    from bertpress.baselines.cvt import CVTTagger
    from bertpress.evaluate.ner import evaluate_tagger

    settings = resolve_settings(["conll2003"])["conll2003"]
    scored = evaluate_tagger(run / "tagger", load_task("conll2003", default_data_dir()), settings)
    tagger = CVTTagger.load(run / "tagger")
    record = {"model": name, "metrics": scored["mean"], "parameters": tagger.parameters,
              "size_mb": (run / "tagger" / "tagger.pt").stat().st_size / 1e6, "training": tagger.info,
              "config": tagger.config.model_dump(exclude={"output_dir"}), "machine_after": conditions()}
    atomic_write_json(RESULTS / "phases" / f"{name}.json", record)
    m = scored["mean"]
    print(f"[cvt] {name}: dev F1 {m['f1']:.2f}, test F1 {m['test_f1']:.2f}, {tagger.info['cpu_seconds']:.0f} CPU-s, "
          f"{tagger.info['train_seconds'] / 60:.0f} min", flush=True)


def student(out_dir: Path) -> Path:
    """The quality benchmark's best distilled 3-layer student, rebuilt by its screen (reused when there)."""
    path = out_dir / "quality" / STUDENT
    if not (path / "bertpress.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality" / "run.py"), "--only", STUDENT,
                        "--out-dir", str(out_dir / "quality")], check=True, cwd=ROOT)
    return path


def specs(out_dir: Path, names: list[str]) -> list[ModelSpec]:
    """The models of the comparison (teacher first) that ``names`` asks for."""
    paths = {"all-MiniLM-L6-v2": PACKAGED_TEACHER, f"3L {STUDENT}": out_dir / "quality" / STUDENT,
             "BiLSTM (supervised)": out_dir / "bilstm", "CVT": out_dir / "cvt"}
    try:
        return [model_spec(f"{label}={path}") for label, path in paths.items() if label in names]
    except BertpressError as e:
        raise SystemExit(f"{e} (run the earlier phases first)") from None


ENCODERS = ["all-MiniLM-L6-v2", f"3L {STUDENT}"]
TAGGERS = ["BiLSTM (supervised)", "CVT"]


def conll() -> tuple[list[TaskData], dict[str, FinetuneSettings]]:
    """CoNLL-2003 and its default task recipe with the benchmark's seeds."""
    return ([load_task("conll2003", default_data_dir())],
            resolve_settings(["conll2003"], [f"conll2003.seeds={json.dumps(SEEDS)}"]))


def encoders(out_dir: Path) -> None:
    """Fine-tune the two encoders for every seed into ``results/cache`` (committed), so the evaluate phase, which
    needs the taggers on disk, only scores and times; their scores and cost go to ``results/phases/encoders.json``."""
    tasks, settings = conll()
    cache = ResultCache(RESULTS / "cache")
    record = {}
    for spec in specs(out_dir, ENCODERS):
        result = evaluate_model(spec, tasks, settings, cache, progress=False)["conll2003"]
        record[spec.label] = {"mean": result["mean"], "std": result["std"], "n": result["n"],
                              "train_seconds": sum(r["train_seconds"] for r in result["runs"])}
        m, sd = result["mean"], result["std"]
        print(f"[cvt] {spec.label}: dev F1 {m['f1']:.2f} ± {sd['f1']:.2f}, test F1 {m['test_f1']:.2f} "
              f"± {sd['test_f1']:.2f} ({result['n']} seeds)", flush=True)
    atomic_write_json(RESULTS / "phases" / "encoders.json", {"models": record, "machine_after": conditions()})


def evaluate(out_dir: Path, command: str) -> None:
    """Score everything on dev and test (the encoders' fine-tuning from the cache), time them, write the report."""
    models = specs(out_dir, ENCODERS + TAGGERS)
    tasks, settings = conll()
    report = run_compare(models[1:], tasks, settings, ResultCache(RESULTS / "cache"), teacher=models[0],
                         data_dir=default_data_dir(), command=command, progress=False)
    write_report(report, RESULTS)
    print((RESULTS / "results.md").read_text().split("\n\n")[0], flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "cvt-bench")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    command = shlex.join(["python", "benchmarks/cvt/run.py", *sys.argv[1:]])
    for phase in args.phases:
        if phase in ("cvt", "bilstm"):
            tagger(phase, args.out_dir)
        elif phase == "student":
            student(args.out_dir)
        elif phase == "encoders":
            encoders(args.out_dir)
        else:
            evaluate(args.out_dir, command)


if __name__ == "__main__":
    main()
