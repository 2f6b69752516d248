"""The recipe's ``search:`` section: search space, genetic algorithm, workers and the proxy setting (fitness)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bertpress.config import Strict
from bertpress.errors import BertpressError
from bertpress.evaluate.proxy import PROXY_TASKS
from bertpress.objectives.mapping import MAPPINGS
from bertpress.recipe import RESULT_NEUTRAL_FIELDS, Recipe

_FITNESS_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ProxySpec(Strict):
    """How one mapping is scored: a short distillation on a corpus sample, then the evaluation's proxy mode."""

    steps: int = Field(150, gt=0, description="distillation steps per evaluated mapping")
    batch_size: int = Field(16, gt=0, description="blocks per distillation step")
    max_blocks: int | None = Field(3000, gt=1, description="corpus sample: packed blocks drawn (seeded) from "
                                                           "data.sources (null: the whole corpus)")
    lr: float | None = Field(None, gt=0, le=1, description="distillation learning rate (default: train.lr)")
    eval_batches: int = Field(4, gt=0, description="held-out batches for the recorded distillation loss")
    tasks: list[str] = Field(list(PROXY_TASKS), min_length=1,
                             description="downstream tasks of the proxy score; fitness = their mean")
    seeds: list[int] = Field([0], min_length=1, description="fine-tuning seeds per proxy task: fitness is the mean, "
                                                          "and with several the record keeps fitness_std (noise)")
    finetune_overrides: list[str] = Field(
        default_factory=list, description="fine-tuning overrides on top of the proxy mode's, e.g. "
                                          "max_train_examples=1000 (as `bertpress evaluate --set`)")
    data_dir: str | None = Field(None, description="folder with glue/ (default $BERTPRESS_DATA or ../shared/data)")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        from bertpress.evaluate.tasks import parse_tasks

        try:
            return parse_tasks(v)
        except BertpressError as e:
            raise ValueError(str(e)) from None


class SearchSpec(Strict):
    """Layer mapping search (``bertpress search-mapping``): a seeded genetic algorithm over mappings."""

    output_dir: str | None = Field(None, description="search directory (default: the recipe's output_dir + '-search')")
    space: Literal["monotone", "free"] = Field(
        "monotone", description="monotone: non-decreasing teacher layers; free: any teacher layer per student layer")
    method: Literal["ga", "exhaustive"] = Field(
        "ga", description="ga: the genetic algorithm below; exhaustive: every mapping of the space, baselines first "
                          "(small spaces: the 6->3 monotone space has 56)")
    population: int = Field(8, ge=2, description="mappings per generation")
    generations: int = Field(3, ge=0, description="generations bred after the initial population")
    max_evaluations: int | None = Field(
        None, gt=0, description="stop after this many distinct mappings (baselines included; null: no cap)")
    tournament_size: int = Field(2, ge=1, description="mappings drawn per tournament; the fittest becomes a parent")
    crossover_rate: float = Field(0.9, ge=0, le=1, description="probability that a child mixes two parents")
    mutation_rate: float = Field(0.3, ge=0, le=1, description="per student layer: probability of a change (a "
                                                               "neighbouring or a random teacher layer)")
    elitism: int = Field(1, ge=0, description="best mappings carried unchanged into the next generation")
    seed: int = Field(0, description="seed of the genetic algorithm (the distillation uses the recipe's seed)")
    baselines: list[str] = Field(["uniform", "last", "skip"], description="heuristic mappings scored beside the "
                                                                          "search: " + ", ".join(MAPPINGS.names()))
    seed_baselines: bool = Field(True, description="start the initial population from the baselines")
    fitness: str = Field("proxy", description="'proxy' (distil + proxy score), or 'module:function' taking an "
                                              "EvalTask and returning {'fitness': float, ...}")
    workers: int = Field(1, ge=0, description="parallel evaluations (0: inside the search process, no timeout)")
    threads: int | None = Field(None, gt=0, description="torch threads per evaluation (default: cores // workers; backend cohort: all cores)")
    backend: Literal["local", "ray", "cohort"] = Field(
        "local", description="local worker processes; Ray tasks (pip install 'bertpress[ray]'); or cohort: in "
                             "this process, cohort_size proxy distillations at a time sharing one teacher forward "
                             "per batch (fitness proxy only; workers and timeout_s are not read)")
    cohort_size: int = Field(8, ge=2, description="backend cohort: students distilled together (one process "
                                                  "holds them all); other backends ignore it")
    ray_address: str | None = Field(None, description="Ray cluster address for ray.init (e.g. 'auto'; default: "
                                                      "a local Ray instance)")
    timeout_s: float | None = Field(3600.0, gt=0, description="seconds per evaluation attempt before its worker "
                                                              "is killed (null: no limit)")
    retries: int = Field(1, ge=0, description="new attempts after a crash, timeout or error")
    keep_students: bool = Field(False, description="keep each proxy student under <search dir>/work/")
    proxy: ProxySpec = Field(default_factory=ProxySpec)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in MAPPINGS:
                raise ValueError(f"unknown baseline {name!r}: choose from {', '.join(MAPPINGS.names())}")
        return list(dict.fromkeys(v))

    @field_validator("fitness")
    @classmethod
    def _fitness_ref(cls, v: str) -> str:
        if v != "proxy" and not _FITNESS_REF.match(v):
            raise ValueError(f"fitness {v!r} is neither 'proxy' nor 'module:function': write e.g. "
                             "fitness: mypackage.scores:score")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        if self.elitism >= self.population:
            raise ValueError(f"search.elitism {self.elitism} leaves no room for children in a population of "
                             f"{self.population}: set elitism below population")
        if self.tournament_size > self.population:
            raise ValueError(f"search.tournament_size {self.tournament_size} exceeds search.population "
                             f"{self.population}: use a smaller tournament")
        if self.ray_address is not None and self.backend != "ray":
            raise ValueError("search.ray_address is only read with backend 'ray': set backend: ray or drop "
                             "ray_address")
        if self.backend == "cohort" and self.fitness != "proxy":
            raise ValueError(f"search.backend 'cohort' shares the proxy distillations' teacher forward, so it runs "
                             f"fitness 'proxy' only, not {self.fitness!r}: use backend: local for it")
        if self.backend == "ray" and self.workers == 0:
            raise ValueError("search.backend 'ray' needs workers >= 1 (concurrent Ray tasks): set workers")
        return self


class SearchRecipe(Recipe):
    """A recipe whose ``search:`` section is validated (``bertpress search-mapping``); the base recipe only carries it."""

    search: SearchSpec = Field(default_factory=SearchSpec, description="layer mapping search: see docs/search.md")


def fitness_settings(recipe: dict[str, Any], spec: SearchSpec) -> dict[str, Any]:
    """Everything a fitness value depends on (cache key): the recipe without paths and search controls, and the
    proxy setting. The genetic algorithm's own knobs are left out, so a changed search reuses old evaluations."""
    neutral = {f.split(".", 1)[1] for f in RESULT_NEUTRAL_FIELDS if "." in f}
    base = {k: v for k, v in recipe.items() if k not in RESULT_NEUTRAL_FIELDS | {"name", "search", "mapping"}}
    # the proxy setting replaces steps, batch size and the corpus sample
    train = {k: v for k, v in base.get("train", {}).items() if k not in neutral | {"max_steps", "batch_size"}}
    data = {k: v for k, v in base.get("data", {}).items() if k not in neutral | {"max_blocks"}}
    # one seed (the default) leaves the key as it was before proxy.seeds existed, so earlier searches resume
    proxy = spec.proxy.model_dump(mode="json", exclude={"seeds"} if spec.proxy.seeds == [0] else None)
    return {**base, "data": data, "train": train, "proxy": proxy, "fitness": spec.fitness}


def search_reference() -> str:
    """Markdown table of every ``search:`` field (docs/search.md includes it; a test keeps it in sync)."""
    import json

    rows = ["| field | default | meaning |", "|---|---|---|"]
    for prefix, model in (("search.", SearchSpec), ("search.proxy.", ProxySpec)):
        for name, f in model.model_fields.items():
            if name == "proxy":
                continue
            value = f.default_factory() if f.default_factory is not None else f.default
            rows.append(f"| `{prefix}{name}` | `{json.dumps(value)}` | {f.description or ''} |")
    return "\n".join(rows) + "\n"
