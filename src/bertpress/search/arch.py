"""Students for given budgets out of a distilled supernet (NAS-BERT's search under constraints).

Every sub-network shape of the supernet run's space is scored by its held-out distillation loss through the
supernet (the run's own objective for that shape, on the run's held-out blocks; the teacher's features are computed
once and reused for every shape), its parameters counted and, optionally, its latency predicted by a
:class:`~bertpress.nas.latency.LatencyTable` measured on this device. For each budget (a parameter and/or latency
ceiling) the best-scoring shape within it is chosen (every shape of the space is scored, so the choice is exact; no
shape over budget is ever returned) and extracted as a plain HF model directory.

    bertpress search-arch RUN_DIR --budget params=8e6 --budget latency_ms=5,params=12e6 [--latency]
"""

from __future__ import annotations

import json
import logging
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
from bertpress.nas.space import Arch
from bertpress.nas.training import SupernetModule
from bertpress.recipe import load_recipe
from bertpress.train.build import build_run
from bertpress.train.data import Batcher
from bertpress.train.distiller import VALID_SEED

log = logging.getLogger(__name__)


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


def score_archs(run_dir: Path, *, batches: int = 4) -> tuple[list[dict[str, Any]], Any]:
    """Held-out loss and parameters of every shape of a supernet run; returns the records and the rebuilt
    :class:`~bertpress.train.build.Run` (its student loaded with the run's trained supernet weights)."""
    run = load_supernet_run(run_dir)
    recipe = run.recipe
    corpus = load_corpus(recipe.data, run.tokenizer, seed=recipe.seed)
    objective = run.stages[-1].objective
    module = SupernetModule(run.supernet, [s.objective for s in run.stages], seed=recipe.seed).eval()
    module.activate(len(run.stages) - 1)
    batcher = Batcher(run.tokenizer, masking=objective.needs_masking, probability=recipe.data.mlm_probability,
                      seed=VALID_SEED, trim=corpus.meta.get("unit", "blocks") != "blocks")
    valid = torch.as_tensor(corpus.valid, dtype=torch.long)
    bs = recipe.train.batch_size
    n = min(batches, -(-len(valid) // bs))
    if n == 0:
        raise BertpressError(f"{run_dir}: the corpus has no held-out blocks to score sub-networks on")
    tap = FeatureTap(run.teacher.parts, objective.requests()[0], truncate=True)
    inputs = [batcher(valid[b * bs:(b + 1) * bs], position=b) for b in range(n)]
    with torch.no_grad():
        teacher = [teacher_forward(tap, **{k: x[k] for k in ("input_ids", "attention_mask") if k in x})
                   for x in inputs]
    losses = module.heldout_losses(run.supernet.space.archs(), inputs, teacher)
    records = [{"arch": a.name, **a.to_dict(), "heldout_loss": loss, "params": run.supernet.num_parameters(a)}
               for a, loss in losses.items()]
    tap.close()
    return records, run


def search_arch(run_dir: str | Path, budgets: list[Budget], output_dir: str | Path, *, batches: int = 4,
                latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score every shape, pick the best per budget, extract each pick into ``output_dir/<shape>``; ``latency``:
    measure a latency table with these options (``batch``, ``seq``, ``threads``, ``rounds``) and predict each
    shape's latency from it (needed by latency budgets). Writes ``archs.json`` and ``archs.md``."""
    run_dir, out = Path(run_dir), Path(output_dir)
    if not budgets:
        raise BertpressError("search-arch needs at least one --budget, e.g. --budget params=8e6")
    if any(b.latency_ms is not None for b in budgets) and latency is None:
        raise BertpressError("a latency_ms budget needs latency measured: add --latency (times every shape here)")
    records, run = score_archs(run_dir, batches=batches)
    report: dict[str, Any] = {"run": str(run_dir), "shapes": len(records), "batches": batches}
    if latency is not None:
        def build(arch: Arch):
            return run.supernet.extract(arch)

        table = measure_table(run.supernet.space, build, **latency)
        for r in records:
            r["latency_ms"] = round(table.predict(Arch(r["layers"], r["hidden"], r["heads"], r["ffn"])), 3)
        held_out = sorted({run.supernet.space.largest, run.supernet.space.smallest})
        report["latency"] = {"table": table.to_dict(), "validation": validate(table, held_out, build,
                                                                              rounds=latency.get("rounds", 20))}
    picks = []
    for budget in budgets:
        feasible = [r for r in records if budget.fits(r)]
        if not feasible:
            picks.append({"budget": budget.name, "arch": None})
            log.warning("budget %s: no sub-network of the space fits", budget.name)
            continue
        best = min(feasible, key=lambda r: (r["heldout_loss"], r["params"]))
        arch = Arch(best["layers"], best["hidden"], best["heads"], best["ffn"])
        target = out / arch.name
        student = run.supernet.extract(arch)
        student.save_pretrained(target)
        run.tokenizer.save_pretrained(target)
        picks.append({"budget": budget.name, **best, "dir": str(target)})
    report.update(picks=picks, archs=sorted(records, key=lambda r: r["params"]))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "archs.json", report)
    atomic_write_text(out / "archs.md", _markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    lat = "latency_ms" in (report["archs"][0] if report["archs"] else {})
    lines = [f"# Sub-networks of {report['run']}", "",
             f"{report['shapes']} shapes scored by held-out distillation loss through the supernet "
             f"({report['batches']} held-out batches).", "", "## Picks", "",
             "| budget | shape | params | " + ("latency ms | " if lat else "") + "held-out loss |",
             "|:--|:--|--:|" + ("--:|" if lat else "") + "--:|"]
    for p in report["picks"]:
        if p.get("arch") is None:
            lines.append(f"| {p['budget']} | none fits | | " + ("| " if lat else "") + "|")
        else:
            lines.append(f"| {p['budget']} | {p['arch']} | {p['params'] / 1e6:.2f}M | "
                         + (f"{p['latency_ms']:.2f} | " if lat else "") + f"{p['heldout_loss']:.4f} |")
    if "latency" in report:
        lines += ["", "Latency model check (predicted vs measured whole model): " + ", ".join(
            f"{v['arch']} {v['predicted_ms']:.2f} vs {v['measured_ms']:.2f} ms ({100 * v['error']:+.1f}%)"
            for v in report["latency"]["validation"])]
    lines += ["", "## Every shape", "", "| shape | params | " + ("latency ms | " if lat else "") + "held-out loss |",
              "|:--|--:|" + ("--:|" if lat else "") + "--:|"]
    lines += [f"| {r['arch']} | {r['params'] / 1e6:.2f}M | " + (f"{r['latency_ms']:.2f} | " if lat else "")
              + f"{r['heldout_loss']:.4f} |" for r in report["archs"]]
    return "\n".join(lines) + "\n"
