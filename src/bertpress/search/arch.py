"""Students for given budgets out of a distilled supernet (NAS-BERT's search under constraints).

Every sub-network shape of the supernet run's space is scored by its held-out distillation loss through the
supernet (the run's own objective for that shape, on the run's held-out blocks; the teacher's features are computed
once and reused for every shape), its parameters counted and, optionally, its latency predicted by a
:class:`~bertpress.nas.latency.LatencyTable` measured on this device. For each budget (a parameter and/or latency
ceiling) the best-scoring shape within it is chosen and extracted as a plain HF model directory; no shape over budget
is ever returned. ``exhaustive`` scores every shape, so the choice is exact; for spaces too large for that, ``ga``
runs the layer mapping search's genetic operators (:mod:`bertpress.search.ga`) over shapes within each budget.

    bertpress search-arch RUN_DIR --budget params=8e6 --budget latency_ms=5,params=12e6 [--latency]
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bertpress.atomic import atomic_write_json, atomic_write_text
from bertpress.data.corpus import load_corpus
from bertpress.errors import BertpressError
from bertpress.init.importance import SCORE_FILE, Importance
from bertpress.models.features import FeatureTap, teacher_forward
from bertpress.models.teacher import STUDENT_DIR
from bertpress.nas.latency import measure_table, validate
from bertpress.nas.space import Arch, ArchSpace
from bertpress.nas.training import SupernetModule
from bertpress.recipe import load_recipe
from bertpress.search import ga
from bertpress.search.ga import GAParams
from bertpress.train.build import build_run
from bertpress.train.data import Batcher
from bertpress.train.distiller import VALID_SEED

log = logging.getLogger(__name__)

#: the genetic search's settings over shapes (generations of 8; chosen on tests/nas/test_search_arch.py's synthetic
#: 7,488-shape space, where 200 evaluations come 3x closer to the optimum than 200 random shapes)
ARCH_GA = GAParams(population=8, tournament_size=3, mutation_rate=0.5)


@dataclass(frozen=True)
class Budget:
    """Ceilings a student must stay within (None: no limit)."""

    params: float | None = None
    latency_ms: float | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``params=8e6``, ``latency_ms=5`` or both, comma-separated."""
        values: dict[str, float] = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in ("params", "latency_ms"):
                raise BertpressError(f"budget {text!r}: unknown limit {key!r}: write params=N and/or latency_ms=N")
            try:
                values[key] = float(value)
            except ValueError:
                raise BertpressError(f"budget {text!r}: {key} needs a number, e.g. {key}=8e6") from None
        return cls(**values)

    @property
    def name(self) -> str:
        parts = ([f"params<={self.params:.3g}"] if self.params is not None else []) + (
            [f"latency<={self.latency_ms:g}ms"] if self.latency_ms is not None else [])
        return ",".join(parts) or "unbounded"

    def fits(self, record: dict[str, Any]) -> bool:
        if self.params is not None and record["params"] > self.params:
            return False
        return self.latency_ms is None or record["latency_ms"] <= self.latency_ms


def load_supernet_run(run_dir: Path) -> Any:
    """The :class:`~bertpress.train.build.Run` of a supernet run with its trained supernet loaded and ranked as the
    run ranked it (``supernet.order: importance``: the scores the run stored in ``etd-importance.json``)."""
    recipe = load_recipe(run_dir / "recipe.yaml")
    if recipe.supernet is None:
        raise BertpressError(f"{run_dir} is not a supernet run (its recipe has no supernet: section): give the "
                             "directory of a run distilled with supernet:")
    run = build_run(recipe)
    weights = run_dir / STUDENT_DIR
    if not (weights / "config.json").is_file():
        raise BertpressError(f"{weights}: no trained supernet found: let the run finish (or resume it) first")
    run.student.load_state_dict(type(run.student).from_pretrained(weights).state_dict())
    if recipe.supernet.order == "importance":
        path = run_dir / SCORE_FILE
        if not path.is_file():
            raise BertpressError(f"{path}: the run's importance ranking is missing: resume the run (it writes the "
                                 "file before training), or copy it from the original run directory")
        run.supernet.rank(Importance.from_json(json.loads(path.read_text())["scores"]))
    return run


class ArchScorer:
    """Held-out distillation loss of supernet shapes (the run's own objective for each shape, on the run's held-out
    blocks, dropout off), each shape scored once; the teacher's features are computed once for all of them."""

    def __init__(self, run_dir: Path, *, batches: int = 4) -> None:
        self.run = run = load_supernet_run(run_dir)
        recipe = run.recipe
        corpus = load_corpus(recipe.data, run.tokenizer, seed=recipe.seed)
        objective = run.stages[-1].objective
        self.module = SupernetModule(run.supernet, [s.objective for s in run.stages], seed=recipe.seed).eval()
        self.module.activate(len(run.stages) - 1)
        batcher = Batcher(run.tokenizer, masking=objective.needs_masking, probability=recipe.data.mlm_probability,
                          seed=VALID_SEED, trim=corpus.meta.get("unit", "blocks") != "blocks")
        valid = torch.as_tensor(corpus.valid, dtype=torch.long)
        bs = recipe.train.batch_size
        n = min(batches, -(-len(valid) // bs))
        if n == 0:
            raise BertpressError(f"{run_dir}: the corpus has no held-out blocks to score sub-networks on")
        tap = FeatureTap(run.teacher.parts, objective.requests()[0], truncate=True)
        self.inputs = [batcher(valid[b * bs:(b + 1) * bs], position=b) for b in range(n)]
        with torch.no_grad():
            self.teacher = [teacher_forward(tap, **{k: x[k] for k in ("input_ids", "attention_mask") if k in x})
                            for x in self.inputs]
        tap.close()
        self.losses: dict[Arch, float] = {}

    def __call__(self, archs: list[Arch]) -> dict[Arch, float]:
        new = [a for a in archs if a not in self.losses]
        if new:
            self.losses.update(self.module.heldout_losses(new, self.inputs, self.teacher))
        return {a: self.losses[a] for a in archs}


class ArchGenes:
    """Shapes of ``space`` as genomes for :mod:`bertpress.search.ga`: the 1-based index of each size among its
    choices (layers, hidden, heads, FFN); repair moves an invalid genome (heads not dividing the hidden width) to
    the nearest valid one."""

    def __init__(self, space: ArchSpace) -> None:
        self.options = (space.layers, space.hidden, space.heads, space.ffn)
        self.valid = [self.genome(a) for a in space.archs()]
        self._valid = set(self.valid)  # repair runs per bred child: membership in O(1)

    @property
    def size(self) -> int:
        return len(self.valid)

    def gene_max(self, i: int) -> int:
        return len(self.options[i])

    def genome(self, arch: Arch) -> tuple[int, ...]:
        return tuple(o.index(v) + 1 for o, v in zip(self.options, (arch.layers, arch.hidden, arch.heads, arch.ffn),
                                                     strict=True))

    def arch(self, genome: tuple[int, ...]) -> Arch:
        return Arch(*(o[g - 1] for o, g in zip(self.options, genome, strict=True)))

    def repair(self, genome: Sequence[int]) -> tuple[int, ...]:
        g = tuple(min(max(int(x), 1), len(o)) for x, o in zip(genome, self.options, strict=True))
        if g in self._valid:
            return g
        return min(self.valid, key=lambda v: sum(abs(a - b) for a, b in zip(v, g, strict=True)))

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        return rng.choice(self.valid)

    def all(self) -> Iterator[tuple[int, ...]]:
        yield from self.valid


def genetic_search(genes: ArchGenes, fits: Callable[[Arch], bool], score: Callable[[list[Arch]], dict[Arch, float]],
                   *, evaluations: int, seed: int, params: GAParams) -> list[Arch]:
    """The shapes a genetic search scores for one budget (fitness: minus the held-out loss), at most
    ``evaluations`` of them: a random population of shapes within the budget, then generations bred from the best
    ``population`` shapes so far by the GA's tournament, crossover and mutation (only new shapes within the
    budget), until the evaluations are spent or no new shape is left."""
    rng = random.Random(seed)
    tried: dict[tuple[int, ...], float | None] = {}

    def new(g: tuple[int, ...]) -> bool:
        return g not in tried and fits(genes.arch(g))

    generation = ga.initial_population(rng, genes, params.population, [], new)
    while generation and len(tried) < evaluations:
        generation = generation[:evaluations - len(tried)]
        losses = score([genes.arch(g) for g in generation])
        tried.update({g: -losses[genes.arch(g)] for g in generation})
        parents = ga.ranked(list(tried.items()))[:params.population]  # (mu + lambda): the best so far breed
        generation = ga.breed(rng, genes, params, parents, new, params.population)
    return [genes.arch(g) for g in tried]


def further_distill(run: Any, arch: Arch, start: Path, steps: int, out: Path) -> Any:
    """Distil the sub-network extracted to ``start`` for ``steps`` more steps on its own: the supernet run's
    recipe (teacher, corpus, objective, mapping rule, training settings) for a plain student of ``arch``'s shape
    that starts from ``start`` (init ``pretrained``). Returns the run's result."""
    from bertpress.train.run import distill

    r = run.recipe.to_dict()
    r.pop("supernet")
    r["student"] = {**r["student"], "num_layers": arch.layers, "hidden_size": arch.hidden, "num_heads": arch.heads,
                    "intermediate_size": arch.ffn, "init": "pretrained", "init_args": {"path": str(start)}}
    r["train"] = {**r["train"], "max_steps": steps, "eval_every": steps, "save_every": steps}
    return distill({**r, "name": f"{r['name']}-{arch.name}", "output_dir": str(out)}, overwrite=True)


def search_arch(run_dir: str | Path, budgets: list[Budget], output_dir: str | Path, *, batches: int = 4,
                latency: dict[str, Any] | None = None, strategy: str = "exhaustive", evaluations: int = 200,
                seed: int = 0, params: GAParams = ARCH_GA, proxy: dict[str, Any] | None = None,
                further_steps: int = 0) -> dict[str, Any]:
    """Pick the best-scoring shape per budget and extract each pick into ``output_dir/<shape>``; ``latency``:
    measure a latency table with these options (``batch``, ``seq``, ``threads``, ``rounds``) and predict each
    shape's latency from it (needed by latency budgets). ``strategy``: ``exhaustive`` scores every shape (the pick
    is exact); ``ga`` runs a genetic search per budget scoring at most ``evaluations`` shapes within it (for spaces
    too large to score; shapes one budget scored are free for the next). ``proxy`` (``tasks``, ``top``, optional
    ``data_dir`` and fine-tuning ``overrides``): re-rank the ``top`` shapes of each budget by held-out loss with the
    evaluation proxy (:func:`bertpress.evaluate.proxy.proxy_scores` of the extracted shape; higher wins).
    ``further_steps``: distil each pick that many steps more on its own (:func:`further_distill`), into
    ``output_dir/<shape>-distilled``. Writes ``archs.json`` and ``archs.md``."""
    run_dir, out = Path(run_dir), Path(output_dir)
    if not budgets:
        raise BertpressError("search-arch needs at least one --budget, e.g. --budget params=8e6")
    if any(b.latency_ms is not None for b in budgets) and latency is None:
        raise BertpressError("a latency_ms budget needs latency measured: add --latency (times every shape here)")
    if strategy not in ("exhaustive", "ga"):
        raise BertpressError(f"search-arch strategy {strategy!r}: use exhaustive or ga")
    if evaluations < 1:
        raise BertpressError(f"--evaluations {evaluations}: score at least one shape per budget")
    if proxy is not None and (proxy.get("top", 0) < 1 or not proxy.get("tasks")):
        raise BertpressError("the evaluation proxy needs tasks and top >= 1 (shapes re-ranked per budget), e.g. "
                             "--proxy-tasks stsb-zeroshot --proxy-top 3")
    if further_steps < 0:
        raise BertpressError(f"--further-steps {further_steps}: give 0 (none) or a number of steps")
    scorer = ArchScorer(run_dir, batches=batches)
    run = scorer.run
    space = run.supernet.space
    report: dict[str, Any] = {"run": str(run_dir), "shapes": len(space.archs()), "batches": batches,
                              "strategy": strategy, **({"proxy": proxy} if proxy else {}),
                              **({"further_steps": further_steps} if further_steps else {})}
    predict: Callable[[Arch], float] | None = None
    if latency is not None:
        def build(arch: Arch):
            return run.supernet.extract(arch)

        table = measure_table(space, build, **latency)
        predict = table.predict
        held_out = sorted({space.largest, space.smallest})
        report["latency"] = {"table": table.to_dict(), "validation": validate(table, held_out, build,
                                                                              rounds=latency.get("rounds", 20))}
    records: dict[Arch, dict[str, Any]] = {}

    def record(arch: Arch) -> dict[str, Any]:
        if arch not in records:
            records[arch] = {"arch": arch.name, **arch.to_dict(), "params": run.supernet.num_parameters(arch),
                             **({"latency_ms": round(predict(arch), 3)} if predict is not None else {})}
        return records[arch]

    def proxy_score(arch: Arch) -> float:
        from bertpress.evaluate.proxy import proxy_scores

        rec = record(arch)
        if "proxy" not in rec:
            where = out / "candidates" / arch.name
            run.supernet.extract(arch).save_pretrained(where)
            run.tokenizer.save_pretrained(where)
            scores = proxy_scores(where, proxy.get("data_dir"), tasks=proxy["tasks"],
                                  overrides=proxy.get("overrides", ()))
            rec["proxy"] = scores.pop("fitness")
            rec["proxy_scores"] = {k: v for k, v in scores.items() if not k.startswith("fitness")}
        return rec["proxy"]

    if strategy == "exhaustive":
        scorer(space.archs())
    picks = []
    for i, budget in enumerate(budgets):
        def fits(arch: Arch, budget: Budget = budget) -> bool:
            return budget.fits(record(arch))

        if strategy == "ga":
            scorer(genetic_search(ArchGenes(space), fits, scorer, evaluations=evaluations, seed=seed + i,
                                  params=params))
        feasible = [a for a in scorer.losses if fits(a)]
        if not feasible:
            picks.append({"budget": budget.name, "arch": None})
            log.warning("budget %s: no sub-network of the space fits", budget.name)
            continue
        ranked = sorted(feasible, key=lambda a: (scorer.losses[a], record(a)["params"]))
        arch = ranked[0] if proxy is None else max(ranked[:proxy["top"]], key=lambda a: (proxy_score(a), -ranked.index(a)))
        target = out / arch.name
        student = run.supernet.extract(arch)
        student.save_pretrained(target)
        run.tokenizer.save_pretrained(target)
        pick = {"budget": budget.name, **record(arch), "heldout_loss": scorer.losses[arch], "dir": str(target)}
        if further_steps:
            done = further_distill(run, arch, target, further_steps, out / f"{arch.name}-distilled")
            pick["further"] = {"steps": done.summary["steps"], "dir": str(done.student_dir),
                               "heldout_loss": done.summary["final"].get("loss")}
        picks.append(pick)
    scored = [{**record(a), "heldout_loss": loss} for a, loss in scorer.losses.items()]
    report.update(scored=len(scored), picks=picks, archs=sorted(scored, key=lambda r: r["params"]))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "archs.json", report)
    atomic_write_text(out / "archs.md", _markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    lat = "latency_ms" in (report["archs"][0] if report["archs"] else {})
    proxy, further = report.get("proxy"), report.get("further_steps")
    how = (f" The {proxy['top']} best by held-out loss within each budget were re-ranked by the evaluation proxy "
           f"({', '.join(proxy['tasks'])}; mean dev score, higher wins)." if proxy else "") + (
        f" Each pick was then distilled {further} steps more on its own (`-distilled`)." if further else "")
    extra = ("proxy score | " if proxy else "") + ("held-out loss after further distillation |" if further else "")
    lines = [f"# Sub-networks of {report['run']}", "",
             f"{report['scored']} of {report['shapes']} shapes scored ({report['strategy']} search) by held-out "
             f"distillation loss through the supernet ({report['batches']} held-out batches).{how}", "", "## Picks", "",
             "| budget | shape | params | " + ("latency ms | " if lat else "") + "held-out loss | " + extra,
             "|:--|:--|--:|" + ("--:|" if lat else "") + "--:|" + "--:|" * (bool(proxy) + bool(further))]
    for p in report["picks"]:
        if p.get("arch") is None:
            lines.append(f"| {p['budget']} | none fits | | " + ("| " if lat else "") + "|"
                         + " |" * (bool(proxy) + bool(further)))
            continue
        cells = ([f"{p['proxy']:.2f}"] if proxy else []) + (
            [f"{p['further']['heldout_loss']:.4f}" if p["further"]["heldout_loss"] is not None else "-"]
            if further else [])
        lines.append(f"| {p['budget']} | {p['arch']} | {p['params'] / 1e6:.2f}M | "
                     + (f"{p['latency_ms']:.2f} | " if lat else "") + f"{p['heldout_loss']:.4f} |"
                     + "".join(f" {c} |" for c in cells))
    if "latency" in report:
        lines += ["", "Latency model check (predicted vs measured whole model): " + ", ".join(
            f"{v['arch']} {v['predicted_ms']:.2f} vs {v['measured_ms']:.2f} ms ({100 * v['error']:+.1f}%)"
            for v in report["latency"]["validation"])]
    lines += ["", "## Every scored shape", "", "| shape | params | " + ("latency ms | " if lat else "")
              + "held-out loss |" + (" proxy score |" if proxy else ""),
              "|:--|--:|" + ("--:|" if lat else "") + "--:|" + ("--:|" if proxy else "")]
    lines += [f"| {r['arch']} | {r['params'] / 1e6:.2f}M | " + (f"{r['latency_ms']:.2f} | " if lat else "")
              + f"{r['heldout_loss']:.4f} |" + ((f" {r['proxy']:.2f} |" if "proxy" in r else " - |") if proxy else "")
              for r in report["archs"]]
    return "\n".join(lines) + "\n"
