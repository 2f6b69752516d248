"""The search's outputs, each written to a temporary file and renamed: best_mapping.yaml (a recipe snippet),
search.json (summary), search.md (tables) and search.png (best and mean fitness per generation vs baselines)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml

from bertpress.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from bertpress.errors import BertpressError

BEST_FILE = "best_mapping.yaml"


def _fmt(x: float | None, digits: int = 4, missing: str = "failed") -> str:
    return missing if x is None else f"{x:.{digits}f}"


def best_mapping_yaml(summary: dict[str, Any]) -> str:
    best = summary["best"]
    vs = ", ".join(f"{n} {_fmt(b['fitness'])}" for n, b in summary["baselines"].items())
    head = (f"# Layer mapping found by `bertpress search-mapping` ({summary['space']['kind']} space of "
            f"{summary['space']['size']} mappings, {summary['evaluations']['distinct']} evaluated).\n"
            f"# Proxy fitness {_fmt(best['fitness'])}; baselines: {vs}.\n"
            "# Paste into a recipe, or: bertpress distill RECIPE --mapping-from SEARCH_DIR\n")
    return head + yaml.safe_dump({"mapping": {"strategy": "explicit", "layers": best["mapping"]}},
                                 default_flow_style=None, sort_keys=False)


def read_best_mapping(search_dir: str | Path) -> list[int]:
    """The best mapping of a finished search (for ``bertpress distill --mapping-from``)."""
    path = Path(search_dir) / BEST_FILE
    if not path.is_file():
        state = Path(search_dir) / "state.json"
        hint = "it has not finished: continue it with --resume" if state.is_file() else \
            "run bertpress search-mapping first, or give its output directory"
        raise BertpressError(f"{str(search_dir)!r} holds no finished mapping search (no {BEST_FILE}): {hint}")
    try:
        layers = yaml.safe_load(path.read_text())["mapping"]["layers"]
        if not (isinstance(layers, list) and layers and all(isinstance(x, int) for x in layers)):
            raise TypeError(f"mapping.layers is {layers!r}")
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise BertpressError(f"{path} is not a mapping snippet ({e}): re-run the search with --resume to "
                             "rewrite it") from None
    return layers


def _how(summary: dict[str, Any]) -> str:
    threads = summary["threads_per_worker"]
    if summary["backend"] == "cohort":
        return f"cohorts of up to {summary['search']['cohort_size']} sharing the teacher forward, {threads} thread(s)"
    return f"{summary['workers']} worker(s) x {threads} thread(s), {summary['backend']}"


def markdown(summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
    tasks = summary["search"]["proxy"]["tasks"] if summary["search"]["fitness"] == "proxy" else []
    best, ev = summary["best"], summary["evaluations"]
    cols = ["mapping", "fitness", *tasks, "distil. loss", "seconds"]

    def row(prefix: list[str], r: dict[str, Any]) -> str:
        scores = r.get("scores") or {}
        std = r.get("fitness_std", (r.get("details") or {}).get("fitness_std"))  # proxy.seeds > 1
        cells = [*prefix, str(r["mapping"]), _fmt(r.get("fitness")) + (f" ± {std:.4f}" if std is not None else ""),
                 *[_fmt(scores[t], 2) if t in scores else "–" for t in tasks],
                 _fmt(r.get("distill_loss"), 4, "–"), f"{r.get('seconds') or 0:.0f}"]
        return "| " + " | ".join(cells) + " |"

    def header(first: str) -> list[str]:
        return ["| " + " | ".join([first, *cols]) + " |", "|" + "---|" * (len(cols) + 1)]

    out = ["# Layer mapping search", "",
           f"{summary['space']['description']}. {ev['distinct']} distinct mappings evaluated ({ev['failed']} failed; "
           f"{100 * ev['distinct'] / summary['space']['size']:.0f}% of the space), " + (
               "every mapping (method: exhaustive), " if summary.get("method") == "exhaustive" else
               f"{len(summary['generations']) - 1} generations after the initial population, ") + "wall time "
           f"{summary['wall_time_s'] / 60:.1f} min ({_how(summary)}; {ev['mean_seconds']:.0f} s per evaluation).",
           "",
           f"**Best mapping {best['mapping']}**: fitness {_fmt(best['fitness'])} ({best['origin']}).", "",
           "## Searched mapping vs baselines", "", *header(""), row(["**searched**"], best)]
    out += [row([name], b) for name, b in summary["baselines"].items()]
    out += ["", "Margin of the searched mapping over each baseline: " + ", ".join(
        f"{n} {m:+.4f}" if m is not None else f"{n} n/a" for n, m in summary["margin_over_baselines"].items()) + ".",
        "", "## Generations", "", "| generation | new mappings | best so far | population mean | population best |",
        "|---|---|---|---|---|"]
    for g in summary["generations"]:
        out.append(f"| {g['generation']} | {len(g['new'])} | {_fmt(g['best'])} {g['best_mapping']} | "
                   f"{_fmt(g['mean'])} | {_fmt(g['population_best'])} |")
    out += ["", "## Every evaluated mapping (best first)", "", *header("rank")]
    ranked = sorted(records, key=lambda r: (r["fitness"] is None, -(r["fitness"] or 0)))
    out += [row([str(i)], r) for i, r in enumerate(ranked, 1)]
    if summary.get("command"):
        out += ["", f"Command: `{summary['command']}`"]
    return "\n".join(out) + "\n"


def plot_png(summary: dict[str, Any]) -> bytes:
    """Best-so-far and population-mean fitness per generation, baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = summary["generations"]
    x = [g["generation"] for g in gens]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(x, [g["best"] for g in gens], "o-", color="tab:red", label="best so far")
    ax.plot(x, [g["mean"] for g in gens], "s--", color="tab:blue", label="population mean")
    for (name, b), color in zip(summary["baselines"].items(), ("tab:green", "tab:purple", "tab:orange", "tab:brown",
                                                               "tab:gray"), strict=False):
        if b["fitness"] is not None:
            ax.axhline(b["fitness"], color=color, linestyle=":", label=f"{name} {b['mapping']}")
    ax.set_xlabel("generation")
    ax.set_ylabel("proxy fitness" if summary["search"]["fitness"] == "proxy" else "fitness")
    ax.set_xticks(x)
    ax.set_title(f"Layer mapping search: best {summary['best']['mapping']}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_outputs(root: Path, summary: dict[str, Any], records: list[dict[str, Any]]) -> list[Path]:
    """All outputs of a finished search; best_mapping.yaml last, so its presence means the rest is there."""
    root = Path(root)
    atomic_write_json(root / "search.json", json.loads(json.dumps(summary, default=str)))
    atomic_write_text(root / "search.md", markdown(summary, records))
    atomic_write_bytes(root / "search.png", plot_png(summary))
    write_tensorboard(root, records)
    atomic_write_text(root / BEST_FILE, best_mapping_yaml(summary))
    return [root / n for n in (BEST_FILE, "search.json", "search.md", "search.png", "evaluations.jsonl")]


def write_tensorboard(root: Path, records: list[dict[str, Any]]) -> None:
    """Fitness, best fitness so far and per-task scores of every evaluated mapping, in evaluation order, as
    TensorBoard scalars (``tensorboard/``; rewritten whole, so a resumed search shows one curve)."""
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(root / "tensorboard", ignore_errors=True)
    writer = SummaryWriter(str(root / "tensorboard"))
    best = None
    for i, r in enumerate(x for x in records if x.get("fitness") is not None):
        best = r["fitness"] if best is None else max(best, r["fitness"])
        writer.add_scalar("search/fitness", r["fitness"], i + 1)
        writer.add_scalar("search/best_fitness", best, i + 1)
        for task, score in (r.get("scores") or {}).items():
            writer.add_scalar(f"search/{task}", score, i + 1)
    writer.close()
