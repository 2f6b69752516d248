"""Write a comparison report: ``results.json`` (everything), ``results.md`` (the model-card table) and
``results.png`` (average score against CPU latency)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from bertpress.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

#: Metrics left out of the details table (bookkeeping, not scores).
_HIDDEN = ("_total", "_thresh")


def _score(task: dict[str, Any]) -> str:
    mean, std, n = task["mean"]["score"], task["std"]["score"], task["n"]
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _cost(training: dict[str, Any] | None) -> str:
    """``distil 1,200 CPU-s / 0.3M tok + fine-tune 900 CPU-s / 0.5M tok`` (the parts the model has)."""
    if not training:
        return "–"
    parts = []
    if "tokens" in training:
        cpu = training.get("cpu_seconds")
        spent = f"{cpu:,.0f} CPU-s" if cpu else f"{training['wall_seconds']:,.0f} s wall"
        parts.append(f"{'distil ' if training['what'] == 'distillation' else ''}{spent} / {training['tokens'] / 1e6:.1f}M tok")
    for cost in training.get("finetune", {}).values():
        parts.append(f"fine-tune {cost['cpu_seconds']:,.0f} CPU-s / {cost['tokens'] / 1e6:.1f}M tok")
    return " + ".join(parts)


def _row(model: dict[str, Any], tasks: list[dict[str, Any]], batches: list[str], columns: dict[str, bool]
         ) -> list[str]:
    name = f"**{model['label']}** (teacher)" if model["role"] == "teacher" else model["label"]
    cells = [name, *(_score(model["tasks"][t["name"]]) for t in tasks), f"{model['average']:.1f}"]
    if columns["retention"]:
        cells.append(f"{model['retention']:.1f}%" if model.get("retention") is not None else "–")
    cells += [f"{model['parameters'] / 1e6:.1f}M", f"{model['size_mb']:.1f} MB"]
    if batches:
        lat = model["latency"]
        cells += [_ms(lat[b]["median_ms"]) if lat else "–" for b in batches]
        if columns["speedup"]:
            cells.append(" / ".join(f"{model['speedup'][b]:.2f}×" for b in batches) if "speedup" in model else "–")
    if columns["sentence"]:
        cells.append(_ms(model["sentence_latency"]["median_ms"]) if "sentence_latency" in model else "–")
    if columns["training"]:
        cells.append(_cost(model.get("training")))
    return cells


def markdown(report: dict[str, Any]) -> str:
    """The comparison table, notes on how it was measured, and a details table of every metric."""
    tasks, models = report["tasks"], report["models"]
    setup = report.get("latency_setup")
    batches = [str(b) for b in setup["batch_sizes"]] if setup else []
    columns = {"retention": bool(report["teacher"]), "speedup": bool(report["teacher"] and setup),
               "sentence": any("sentence_latency" in m for m in models),
               "training": any(m.get("kind") == "tagger" for m in models)}
    head = ["Model", *(t["title"] for t in tasks), "Avg"]
    if columns["retention"]:
        head.append("Retention")
    head += ["Params", "Size"]
    if setup:
        head += [f"CPU ms, batch {b}" for b in batches]
        if columns["speedup"]:
            head.append(f"Speed-up ({' / '.join(f'b{b}' for b in batches)})")
    if columns["sentence"]:
        head.append("CPU ms / sentence")
    if columns["training"]:
        head.append("Training cost")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":--", *["--:"] * (len(head) - 1)]) + "|"]
    lines += ["| " + " | ".join(_row(m, tasks, batches, columns)) + " |" for m in models]
    seeds = {t["name"]: t["settings"].get("seeds") for t in tasks}  # zero-shot tasks have none
    notes = ["", "Dev-set scores in %, fine-tuned with the same settings for every model (zero-shot tasks: "
             "not fine-tuned); mean ± sample std over seeds where a task ran several (" +
             ", ".join(f"{t['title']}: {len(seeds[t['name']]) if seeds[t['name']] else 'no training'}"
                       for t in tasks) + "). Scores: " +
             "; ".join(f"{t['title']} {t['score']}" for t in tasks) + "."]
    if setup:
        load = (f", load average {setup['load_average'][0]} before / {setup['load_average_after'][0]} after"
                if setup.get("load_average") else "")
        notes.append(f"Latency: median forward pass of the bare encoder, sequence {setup['seq_len']}, fp32, "
                     f"{setup['torch_threads']} torch threads on {setup['cpu']} ({setup['cpu_count']} cores){load}; "
                     "models timed in interleaved rounds." + (
                         f" Per sentence: words to last-layer output (tokenisation included) at batch 1, median over "
                         f"{setup['sentences']} {setup['sentence_task']} dev sentences." if columns["sentence"] else ""))
    if columns["training"]:
        notes.append("Training cost: what making the model took, where it is known: a tagger's whole training; a "
                     "student's distillation, where its directory records it; fine-tuning on the task (mean over "
                     "seeds); not the teacher's pre-training. CPU-seconds of all threads, tokens seen.")
    if report.get("command"):
        notes.append(f"Command: `{report['command']}` ({report['wall_seconds'] / 60:.0f} min wall time).")
    return "\n".join([*lines, "\n".join(notes), "", details(report)]) + "\n"


def details(report: dict[str, Any]) -> str:
    """Every metric's mean per task and model, with the learning rate each model was reported at."""
    models = report["models"]
    lines = ["| Task | Metric | " + " | ".join(m["label"] for m in models) + " |",
             "|:--|:--|" + "--:|" * len(models)]
    for task in report["tasks"]:
        name = task["name"]
        metrics = [k for k in models[0]["tasks"][name]["mean"] if not k.endswith(_HIDDEN) and k != "score"]
        for metric in metrics:
            cells = [f"{m['tasks'][name]['mean'].get(metric, float('nan')):.2f}" for m in models]
            lines.append(f"| {task['title']} | {metric} | " + " | ".join(cells) + " |")
        if any(m["tasks"][name]["lr"] is not None for m in models):  # zero-shot tasks and taggers: no fine-tuning
            lines.append(f"| {task['title']} | lr | " + " | ".join(
                f"{m['tasks'][name]['lr']:g}" if m["tasks"][name]["lr"] is not None else "–" for m in models) + " |")
        else:
            lines.append(f"| {task['title']} | pooling | " + " | ".join(
                m["tasks"][name]["runs"][0].get("pooling", "?") for m in models) + " |")
    return "\n".join(lines)


def plot(report: dict[str, Any]) -> bytes | None:
    """PNG of average score against latency at the largest batch (None without latency)."""
    setup = report.get("latency_setup")
    if not setup:
        return None
    from matplotlib.figure import Figure  # slow import, only needed here

    batch = str(max(setup["batch_sizes"]))
    per_sentence = all("sentence_latency" in m for m in report["models"])  # taggers have no encoder latency
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for m in report["models"]:
        if not (per_sentence or m["latency"]):
            continue
        x = m["sentence_latency"]["median_ms"] if per_sentence else m["latency"][batch]["median_ms"]
        y = m["average"]
        ax.scatter([x], [y], s=60, marker="*" if m["role"] == "teacher" else "o", zorder=3)
        ax.annotate(m["label"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel(f"CPU ms per {setup.get('sentence_task', '')} sentence, batch 1" if per_sentence
                  else f"CPU latency, batch {batch} x {setup['seq_len']} tokens (ms)")
    ax.set_ylabel(f"average score over {len(report['tasks'])} tasks")
    ax.grid(alpha=0.3)
    ax.margins(x=0.25, y=0.2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the JSON, Markdown and (with latency) PNG files; returns their paths."""
    out_dir = Path(out_dir)
    written = [out_dir / "results.json", out_dir / "results.md"]
    atomic_write_json(written[0], report)
    atomic_write_text(written[1], markdown(report))
    image = plot(report)
    if image is not None:
        written.append(out_dir / "results.png")
        atomic_write_bytes(written[-1], image)
    return written


def write_tensorboard(report: dict[str, Any], out_dir: Path) -> Path:
    """Every model's task scores, average and retention as TensorBoard scalars (``tensorboard/<label>/``, one run
    per model so they overlay); returns the folder."""
    from torch.utils.tensorboard import SummaryWriter

    root = Path(out_dir) / "tensorboard"
    for m in report["models"]:
        writer = SummaryWriter(str(root / m["label"].replace("/", "_")))
        for task, result in m["tasks"].items():
            writer.add_scalar(f"score/{task}", result["mean"]["score"], 0)
        writer.add_scalar("score/average", m["average"], 0)
        if m.get("retention") is not None:
            writer.add_scalar("retention", m["retention"], 0)
        writer.close()
    return root
