"""Layer mapping search (LMS): baselines first, then a seeded genetic algorithm, evaluations cached and saved.

Resuming replays the algorithm from its seed: every decision depends only on the seed and on fitness values, and
the values already known come from the saved cache, so a resumed search evaluates nothing twice and ends exactly
as an uninterrupted one would.
"""

from __future__ import annotations

import logging
import random
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bertpress
from bertpress.errors import BertpressError
from bertpress.recipe import Recipe, recipe_from_dict
from bertpress.search import ga
from bertpress.search.fitness import EvalTask, FitnessFn, proxy_recipe, resolve_fitness
from bertpress.search.report import write_outputs
from bertpress.search.runners import Outcome, Runner, evaluation_threads, make_runner
from bertpress.search.space import Mapping, SearchSpace
from bertpress.search.spec import SearchRecipe, SearchSpec, fitness_settings
from bertpress.search.state import STATE_FILE, SearchState
from bertpress.train.build import resolve_recipe
from bertpress.train.output import check_job_dir

log = logging.getLogger(__name__)

#: ``method: exhaustive`` refuses spaces larger than this (the genetic algorithm is for those)
MAX_EXHAUSTIVE = 5000


@dataclass
class SearchResult:
    """Where the search wrote its outputs, and the content of its ``search.json``."""

    search_dir: Path
    summary: dict[str, Any]

    @property
    def best_mapping(self) -> list[int]:
        return self.summary["best"]["mapping"]


def default_search_dir(recipe: SearchRecipe) -> Path:
    spec = recipe.search
    return Path(spec.output_dir or f"{recipe.output_dir.rstrip('/')}-search")


def _layers(recipe: Recipe) -> tuple[int, int]:
    """(student layers, teacher layers) from the teacher's config, without loading its weights when possible."""
    from transformers import AutoConfig

    from bertpress.models.architectures import architecture_config
    from bertpress.models.student import StudentShape
    from bertpress.models.teacher import load_teacher, resolve_model

    t = recipe.teacher
    try:
        config = AutoConfig.from_pretrained(resolve_model(t.name_or_path), revision=t.revision)
    except (OSError, ValueError):
        config = load_teacher(t.name_or_path, revision=t.revision, mlm_head=t.mlm_head).model.config  # its error
    s = recipe.student
    shape = StudentShape(s.num_layers, s.hidden_size, s.num_heads, s.intermediate_size)
    return architecture_config(s.architecture, config, shape, s.architecture_options).num_hidden_layers, \
        config.num_hidden_layers


def _check_dir(path: Path, *, resume: bool, overwrite: bool) -> None:
    check_job_dir(path, label="search directory", holds=lambda p: (p / STATE_FILE).is_file(), job="search",
                  other="directory", resume=resume, overwrite=overwrite)


def _fitness_ref(fitness: str | FitnessFn, spec: SearchSpec) -> str:
    if isinstance(fitness, str):
        return fitness
    if spec.backend == "cohort":
        raise BertpressError("search.backend 'cohort' runs the proxy fitness (its distillations share the teacher "
                             "forward): drop the fitness function, or use backend: local")
    ref = f"{fitness.__module__}:{getattr(fitness, '__qualname__', '')}"
    if spec.workers == 0 and spec.backend == "local":
        return ref
    if "<" in ref or not getattr(fitness, "__qualname__", ""):
        raise BertpressError(f"fitness {fitness!r} cannot be sent to worker processes: pass a module-level "
                             "function, or set search.workers: 0")
    return ref


def _preflight_proxy(recipe: Recipe, spec: SearchSpec, probe: EvalTask) -> dict[str, Any]:
    """Checks of the proxy setting that fail in seconds: data directory and task files, fine-tuning overrides, the
    per-evaluation recipe. Returns the proxy section with the data directory made absolute."""
    from bertpress.data.tasks.files import resolve_data_dir
    from bertpress.evaluate.proxy import proxy_settings
    from bertpress.evaluate.tasks import load_task

    proxy = spec.proxy.model_dump(mode="json")
    data_dir = resolve_data_dir(spec.proxy.data_dir)
    proxy["data_dir"] = str(data_dir.resolve())
    try:
        proxy_settings(spec.proxy.tasks, spec.proxy.finetune_overrides)
    except BertpressError as e:
        raise BertpressError(f"search.proxy.finetune_overrides: {e}") from None
    for task in spec.proxy.tasks:
        load_task(task, data_dir)
    recipe_from_dict(proxy_recipe(probe, Path(recipe.output_dir)), source="proxy recipe")
    return proxy


class _Search:
    """One session of a search: the state, the runner and the genetic algorithm's bookkeeping."""

    def __init__(self, recipe: Recipe, spec: SearchSpec, space: SearchSpace, state: SearchState, runner: Runner,
                 task_template: dict[str, Any]) -> None:
        self.recipe, self.spec, self.space, self.state, self.runner = recipe, spec, space, state, runner
        self.template = task_template
        self.seen: list[Mapping] = []
        self.meta: dict[Mapping, tuple[int, str]] = {}
        self.queue: list[EvalTask] = []
        self.new_evaluations = 0
        self.generations: list[dict[str, Any]] = []

    def is_new(self, m: Mapping) -> bool:
        return m not in self.meta

    def budget_left(self) -> float:
        cap = self.spec.max_evaluations
        return float("inf") if cap is None else cap - len(self.seen)

    def fitness(self, m: Mapping) -> float | None:
        record = self.state.get(m)
        return None if record is None else record["fitness"]

    def request(self, mappings: list[Mapping], generation: int, origin: str | Callable[[Mapping], str]) -> None:
        """Queue ``mappings`` for scoring (those not requested before; those in the cache cost nothing)."""
        for m in mappings:
            if m in self.meta:
                continue
            self.meta[m] = (generation, origin(m) if callable(origin) else origin)
            self.seen.append(m)
            if self.state.get(m) is None:
                key = self.state.key(m)
                self.queue.append(EvalTask(key=key, mapping=m, work_dir=str(self.state.root / "work" / key),
                                           **self.template))

    def flush(self) -> None:
        """Score the queued mappings; each one is recorded (and the state saved) as soon as it is done."""
        tasks, self.queue = self.queue, []
        if not tasks:
            return
        log.info("evaluating %d mapping(s): %s", len(tasks), ", ".join(str(list(t.mapping)) for t in tasks))
        try:
            self.runner.run(tasks, self._done)
        except BertpressError as e:
            if self.template["fitness"] != "proxy":
                raise
            raise BertpressError(f"{e} (in the proxy setting, train.max_steps, train.batch_size, train.lr and "
                                 "data.max_blocks come from search.proxy)") from None

    def _done(self, task: EvalTask, outcome: Outcome) -> None:
        generation, origin = self.meta[task.mapping]
        result = outcome["result"] or {}
        attempts = outcome["attempts"]
        record = {"key": task.key, "mapping": list(task.mapping), "status": outcome["status"],
                  "fitness": result.get("fitness"), "scores": result.get("scores"),
                  "distill_loss": result.get("distill_loss"), "seconds": round(sum(a["seconds"] for a in attempts), 2),
                  "generation": generation, "origin": origin, "attempts": attempts,
                  "error": None if outcome["status"] == "ok" else attempts[-1]["error"],
                  "details": {k: v for k, v in result.items() if k not in ("fitness", "scores", "distill_loss")},
                  "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.new_evaluations += 1
        self.state.add(record)
        shown = "failed" if record["fitness"] is None else f"{record['fitness']:.4f}"
        log.info("mapping %s (%s, generation %d): fitness %s in %.0fs [%d evaluated, %d distinct so far]",
                 record["mapping"], origin, generation, shown, record["seconds"], self.new_evaluations,
                 len(self.state.records))

    def note_generation(self, generation: int, population: list[Mapping], new: list[Mapping]) -> None:
        values = [f for f in map(self.fitness, population) if f is not None]
        best = self.best()
        self.generations.append({
            "generation": generation, "new": [list(m) for m in new], "population": [list(m) for m in population],
            "best": best[1] if best else None, "best_mapping": list(best[0]) if best else None,
            "population_best": max(values) if values else None,
            "mean": sum(values) / len(values) if values else None, "distinct_so_far": len(self.seen)})
        self.state.progress = {"generation": generation, "population": [list(m) for m in population],
                               "requested": len(self.seen)}
        self.state.save()
        g = self.generations[-1]
        if g["best"] is not None:
            log.info("generation %d done: best %.4f %s, population mean %.4f, %d distinct mappings", generation,
                     g["best"], g["best_mapping"], g["mean"], len(self.seen))

    def best(self) -> tuple[Mapping, float] | None:
        ranked = ga.ranked([(m, self.fitness(m)) for m in self.seen])
        return ranked[0] if ranked else None

    def run_exhaustive(self, baselines: dict[str, Mapping]) -> None:
        """Every mapping of the space, the baselines first, as one population (generation 0)."""
        names = {m: "baseline:" + "+".join(n for n, x in baselines.items() if x == m) for m in baselines.values()}
        self.request(list(dict.fromkeys(baselines.values())), 0, lambda m: names[m])
        self.request(list(self.space.all()), 0, "exhaustive")
        self.flush()
        self.note_generation(0, list(self.seen), list(self.seen))

    def run(self, baselines: dict[str, Mapping]) -> None:
        spec = self.spec
        rng = random.Random(spec.seed)
        names = {m: "baseline:" + "+".join(n for n, x in baselines.items() if x == m) for m in baselines.values()}
        seeds = list(dict.fromkeys(baselines.values()))
        self.request(seeds, 0, lambda m: names[m])  # first in the queue: baselines are scored first
        pop_seeds = seeds if spec.seed_baselines else []
        extra = max(0, min(spec.population - len(pop_seeds), self.budget_left()))
        population = ga.initial_population(rng, self.space, len(pop_seeds) + int(extra), pop_seeds, self.is_new)
        fresh = [m for m in population if self.is_new(m)]
        self.request(fresh, 0, "initial")
        self.flush()
        self.note_generation(0, population, [*seeds, *fresh])
        params = ga.GAParams(spec.population, spec.tournament_size, spec.crossover_rate, spec.mutation_rate,
                             spec.elitism)
        for generation in range(1, spec.generations + 1):
            scored = [(m, self.fitness(m)) for m in population]
            kept = ga.elites(scored, spec.elitism)
            n = int(min(spec.population - len(kept), self.budget_left()))
            if n <= 0:
                log.info("evaluation budget spent (%d mappings): stopping before generation %d", len(self.seen),
                         generation)
                break
            children = ga.breed(rng, self.space, params, scored, self.is_new, n)
            if not children:
                log.info("every mapping of the search space has been evaluated: stopping")
                break
            self.request(children, generation, "offspring")
            self.flush()
            population = kept + children
            self.note_generation(generation, population, children)


def search_mapping(recipe: Recipe | str | Path | dict, *, overrides: list[str] | None = None,
                   search_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                   fitness: FitnessFn | None = None, runner: Runner | None = None, command: str | None = None,
                   runtime_env: dict[str, Any] | None = None) -> SearchResult:
    """Search the layer mapping of ``recipe`` (its ``search:`` section, defaults when absent) and write the outputs.

    ``fitness`` replaces the recipe's fitness function (a module-level function when workers run it); ``runner``
    replaces the runner the recipe asks for; ``runtime_env`` is passed to ``ray.init``.
    """
    recipe = resolve_recipe(recipe, overrides, schema=SearchRecipe)
    spec = recipe.search
    root = Path(search_dir) if search_dir else default_search_dir(recipe)
    _check_dir(root, resume=resume, overwrite=overwrite)

    from bertpress.objectives import resolve_mapping

    student_layers, teacher_layers = _layers(recipe)
    space = SearchSpace(student_layers, teacher_layers, spec.space)
    log.info("%s", space.describe())
    baselines = {n: space.check(resolve_mapping(n, student_layers, teacher_layers), f"baseline {n!r}")
                 for n in spec.baselines}
    if spec.method == "exhaustive" and space.size > min(spec.max_evaluations or MAX_EXHAUSTIVE, MAX_EXHAUSTIVE):
        cap = min(spec.max_evaluations or MAX_EXHAUSTIVE, MAX_EXHAUSTIVE)
        raise BertpressError(f"search.method exhaustive would evaluate all {space.size:,} mappings, more than "
                             f"{'search.max_evaluations' if spec.max_evaluations else 'the limit of'} {cap:,}: use "
                             "method: ga, space: monotone, or raise max_evaluations")
    if spec.max_evaluations is not None and spec.max_evaluations < len(set(baselines.values())):
        raise BertpressError(f"search.max_evaluations {spec.max_evaluations} is less than the "
                             f"{len(set(baselines.values()))} baselines: raise it, or list fewer baselines")
    ref = _fitness_ref(fitness if fitness is not None else spec.fitness, spec)
    settings = fitness_settings(recipe.to_dict(), spec) | {"fitness": ref}
    threads = evaluation_threads(spec)
    template = {"recipe": recipe.to_dict(), "proxy": spec.proxy.model_dump(mode="json"), "fitness": ref,
                "eval_cache": str(root / "eval-cache"), "threads": threads, "keep_student": spec.keep_students}
    if fitness is None and ref != "proxy":
        resolve_fitness(ref)  # importable here, before anything is written
    if ref == "proxy":
        probe = EvalTask(key="probe", mapping=next(iter(baselines.values()), (1,) * student_layers), **template)
        template["proxy"] = _preflight_proxy(recipe, spec, probe)

    state = SearchState.load(root, settings) if resume else SearchState(root, settings)
    if overwrite and root.is_dir():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    state.sessions += 1
    state.complete = False
    state.save()
    started = time.perf_counter()
    own_runner = runner is None
    runner = runner or make_runner(spec, fitness=fitness, runtime_env=runtime_env)
    search = _Search(recipe, spec, space, state, runner, template)
    try:
        if spec.method == "exhaustive":
            search.run_exhaustive(baselines)
        else:
            search.run(baselines)
    finally:
        if own_runner:
            runner.close()
    best = search.best()
    if best is None:
        first = next((r["error"] for r in state.records.values() if r["error"]), "unknown")
        raise BertpressError(f"every evaluated mapping failed (first error: {first}): see "
                             f"{root / 'evaluations.jsonl'}, fix the cause and pass --resume")
    state.complete = True
    state.save()
    work = root / "work"
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()
    summary = _summary(search, baselines, best, threads, time.perf_counter() - started, command)
    write_outputs(root, summary, [state.get(m) for m in search.seen])
    return SearchResult(root, summary)


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    return {**{k: record.get(k) for k in ("mapping", "fitness", "scores", "distill_loss", "seconds", "origin",
                                          "generation", "status")},
            "fitness_std": (record.get("details") or {}).get("fitness_std")}


def _summary(search: _Search, baselines: dict[str, Mapping], best: tuple[Mapping, float], threads: int,
             session_s: float, command: str | None) -> dict[str, Any]:
    state, spec, space = search.state, search.spec, search.space
    records = [state.get(m) for m in search.seen]
    base = {n: _brief(state.get(m)) for n, m in baselines.items()}
    best_record = _brief(state.get(best[0]))
    return {
        "bertpress_version": bertpress.__version__,
        "complete": True,
        "best": best_record,
        "baselines": base,
        "margin_over_baselines": {n: (best[1] - b["fitness"]) if b["fitness"] is not None else None
                                  for n, b in base.items()},
        "space": {"kind": space.kind, "student_layers": space.student_layers,
                  "teacher_layers": space.teacher_layers, "size": space.size, "description": space.describe(),
                  "covered": len(search.seen) / space.size},
        "method": spec.method,
        "evaluations": {"distinct": len(records), "failed": sum(r["status"] != "ok" for r in records),
                        "this_session": search.new_evaluations,
                        "retried": sum(len(r["attempts"]) > 1 for r in records),
                        "evaluation_seconds": round(sum(r["seconds"] for r in records), 1),
                        "mean_seconds": round(statistics.fmean(ok), 1) if (ok := [
                            r["seconds"] for r in records if r["status"] == "ok"]) else None},
        "generations": search.generations,
        "wall_time_s": round(state.elapsed(), 1),
        "session_time_s": round(session_s, 1),
        "sessions": state.sessions,
        "workers": spec.workers, "backend": spec.backend, "threads_per_worker": threads,
        "search": spec.model_dump(mode="json"),
        "recipe": search.recipe.to_dict(),
        "settings_hash": state.digest,
        "command": command,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
