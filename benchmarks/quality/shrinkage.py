"""Does distillation shrink the student's last layer? (issue 12: why CoLA drops with longer distillation)

Hidden-state MSE rewards a student that cannot predict part of the teacher's variation for shrinking towards the
mean (the MSE-optimal answer under limited capacity), which loses exactly the sentence-to-sentence differences a
[CLS] classifier fine-tunes on. This measures it, with no training: the last hidden layer of each model on the first
``--sentences`` CoLA dev sentences, three statistics

* token norm: mean L2 norm of the (unpadded) token vectors,
* token std: per-dimension std over all tokens, averaged over dimensions,
* [CLS] std: per-dimension std of the [CLS] vector over sentences, averaged (what the classifier head sees),

each also as a share of the teacher's, next to the model's fine-tuned CoLA score where phase 2
(``results/finetune/results.json``) has one. Models: the teacher, the untrained ``copy-1-3-6`` and distilled
students under ``--out-dir`` (the curve's checkpoints, the 150-step screen students, the shipped recipe's 2,000-step
run). Seconds on the CPU.

    python benchmarks/quality/shrinkage.py --out-dir /work/runs/quality

Writes ``results/shrinkage.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

from bertpress.atomic import atomic_write_json, atomic_write_text
from bertpress.data.tasks.files import default_data_dir
from bertpress.evaluate.latency import conditions
from bertpress.models.teacher import PACKAGED_TEACHER, resolve_model

_spec = importlib.util.spec_from_file_location("quality_run", Path(__file__).with_name("run.py"))
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)

#: (label, directory under --out-dir or "teacher", distillation steps x blocks of 128 tokens)
MODELS = (("teacher", "teacher", None), ("copy-1-3-6", "copy-1-3-6", 0),
          ("curve step 150", "curve/step-150", 150 * 16), ("tinybert-top-probs (screen, 150 steps)",
                                                          "tinybert-top-probs", 150 * 16),
          ("curve step 600", "curve/step-600", 600 * 16), ("recipe-tinybert-3l (2,000 steps)", "recipe-tinybert-3l",
                                                            2000 * 32),
          # the scale-free hidden terms (run.py candidates; skipped until screened)
          ("tinybert-top-probs-lnmse (screen, 150 steps)", "tinybert-top-probs-lnmse", 150 * 16),
          ("tinybert-top-probs-cos (screen, 150 steps)", "tinybert-top-probs-cos", 150 * 16),
          # the shipped recipe with objective.hidden_loss: cosine, at its budget
          ("tinybert-3l-cos (2,000 steps)", "tinybert-3l-cos", 2000 * 32),
          # tinybert-top-probs plus the [CLS] batch-similarity term (run.py candidate)
          ("tinybert-top-probs-clsrel (screen, 150 steps)", "tinybert-top-probs-clsrel", 150 * 16))
#: phase 2 labels of the models above
FINETUNED = {"teacher": "teacher", "copy-1-3-6": "copy-1-3-6",
             "tinybert-top-probs (screen, 150 steps)": "tinybert-top-probs",
             "recipe-tinybert-3l (2,000 steps)": "recipe-tinybert-3l", "tinybert-3l-cos (2,000 steps)": "tinybert-3l-cos",
             "tinybert-top-probs-clsrel (screen, 150 steps)": "tinybert-top-probs-clsrel"}


def sentences(n: int) -> list[str]:
    rows = (default_data_dir() / "glue" / "CoLA" / "dev.tsv").read_text().splitlines()
    return [r.split("\t")[3] for r in rows[:n]]


@torch.no_grad()
def last_layer_stats(model_dir: Path, texts: list[str]) -> dict[str, float]:
    """Token norm, token std and [CLS] std of the last hidden layer on ``texts`` (padding excluded)."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    x = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    h = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).last_hidden_state
    tokens = h[x["attention_mask"].bool()]
    return {"token_norm": tokens.norm(dim=-1).mean().item(), "token_std": tokens.std(0).mean().item(),
            "cls_std": h[:, 0].std(0).mean().item()}


def cola_scores() -> dict[str, tuple[float, float]]:
    """CoLA (mean, std) by label from phase 2 and from the CoLA-only check (``results/cola``: candidates fine-tuned
    on CoLA alone with phase 2's settings and cache)."""
    out = {}
    for path in (quality.RESULTS / "cola" / "results.json", quality.RESULTS / "finetune" / "results.json"):
        for row in json.loads(path.read_text())["models"] if path.is_file() else []:
            cola = row["tasks"].get("cola")
            if cola:
                out[row["label"]] = (cola["mean"]["score"], cola["std"]["score"] if cola.get("std") else 0.0)
    return out


def markdown(r: dict[str, Any]) -> str:
    out = ["# Does distillation shrink the student's last layer?", "",
           f"Last hidden layer on the first {r['sentences']} CoLA dev sentences, no training. Token norm: mean L2 "
           "norm of the token vectors; token std: per-dimension std over all tokens; [CLS] std: per-dimension std "
           "of the [CLS] vector over sentences (what a [CLS] classifier sees); % = share of the teacher's. CoLA: "
           "fine-tuned Matthews corr. (6 epochs, 3 seeds; phase 2 or the CoLA-only check), where it ran.", "",
           f"Command: `{r['command']}`; machine: {r['machine']['cpu']}.", "",
           "| model | distilled blocks (x128 tokens) | token norm | token std | [CLS] std | CoLA |",
           "|:--|--:|--:|--:|--:|--:|"]
    t = r["rows"][0]
    for row in r["rows"]:
        cola, blocks = row.get("cola"), "-" if row["blocks"] is None else f"{row['blocks']:,}"
        out.append(f"| {row['label']} | {blocks} | "
                   + " | ".join(f"{row[k]:.3f} ({100 * row[k] / t[k]:.0f}%)" for k in ("token_norm", "token_std",
                                                                                      "cls_std"))
                   + " | " + ("-" if cola is None else f"{cola[0]:.1f} ± {cola[1]:.1f}") + " |")
    return "\n".join(out) + "\n"


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, t = r["rows"], r["rows"][0]
    fig, ax = plt.subplots(figsize=(9, 3.8), dpi=110)
    width = 0.27
    for i, key in enumerate(("token_norm", "token_std", "cls_std")):
        ax.bar([j + (i - 1) * width for j in range(len(rows))], [100 * x[key] / t[key] for x in rows], width,
               label=key.replace("_", " "))
    ax.axhline(100, color="k", lw=0.8)
    ax.set_xticks(range(len(rows)), [x["label"].replace(" (", "\n(") for x in rows], fontsize=7)
    ax.set(ylabel="% of the teacher's", title="last hidden layer on CoLA dev sentences")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=Path("runs/quality"), help="the quality benchmark's run directory")
    p.add_argument("--sentences", type=int, default=256)
    args = p.parse_args()
    texts = sentences(args.sentences)
    scores = cola_scores()
    rows = []
    for label, name, blocks in MODELS:
        where = Path(resolve_model(PACKAGED_TEACHER)) if name == "teacher" else Path(resolve_model(
            str(args.out_dir / name)))
        if not (where / "config.json").is_file():
            print(f"[shrinkage] {label}: no model at {where}, skipped", flush=True)
            continue
        rows.append({"label": label, "dir": str(where), "blocks": blocks, **last_layer_stats(where, texts),
                     "cola": scores.get(FINETUNED.get(label, ""))})
    result = {"command": shlex.join(["python", "benchmarks/quality/shrinkage.py", *sys.argv[1:]]),
              "machine": conditions(), "sentences": len(texts), "rows": rows}
    atomic_write_json(quality.RESULTS / "shrinkage.json", result)
    atomic_write_text(quality.RESULTS / "shrinkage.md", markdown(result))
    plot(result, quality.RESULTS / "shrinkage.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
