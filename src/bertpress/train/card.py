"""The student's model card (``README.md``) and the files a hub upload takes (``bertpress push``).

A run directory keeps its student in ``student/``, a Hugging Face model directory
(``AutoModel.from_pretrained``; with the sentence-transformers stack, ``SentenceTransformer``) that holds only what
an upload needs; ``checkpoints/``, ``tensorboard/`` and ``metrics.jsonl`` are beside it, in the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: what never goes into an upload, should a model directory hold it: training state and logs
PRIVATE = ("checkpoints", "tensorboard", "metrics.jsonl")


def publishable_files(model_dir: Path) -> list[Path]:
    """The files of ``model_dir`` a hub upload takes (weights, config, tokenizer, sentence-transformers modules, the
    card, the recipe and ``bertpress.json``; no hidden or temporary files), relative to it."""
    model_dir = Path(model_dir)
    out = []
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir)
        if path.is_file() and rel.parts[0] not in PRIVATE and not any(p.startswith(".") for p in rel.parts) \
                and not path.name.endswith(".tmp"):
            out.append(rel)
    return out


def _stage_rows(summary: dict[str, Any]) -> list[str]:
    rows = ["| stage | steps | lr | trains | objective |", "|---|---:|---:|---|---|"]
    for s in summary.get("stages", []):
        terms = ", ".join(f"{k} × {v:g}" for k, v in s["objective"].get("weights", {}).items())
        rows.append(f"| {s['name']} | {s['steps']} | {s['lr']:g} | {', '.join(s['trainable'])} | {terms} |")
    return rows


def model_card(summary: dict[str, Any], evaluation: str | None = None, repo_id: str | None = None) -> str:
    """Markdown with YAML metadata for the student a run (``summary`` = its ``bertpress.json``) produced;
    ``evaluation`` is a Markdown table (e.g. of ``bertpress evaluate``) to include."""
    from huggingface_hub import ModelCard, ModelCardData

    r, t, s = summary["recipe"], summary["teacher"], summary["student"]
    source = t["source"]
    st = bool(summary.get("sentence_transformers"))
    hub_teacher = "/" in source and not Path(source).exists() and not source.startswith("packaged:")
    base = "sentence-transformers/all-MiniLM-L6-v2" if source == "packaged:all-MiniLM-L6-v2" else (
        source if hub_teacher else None)
    data = ModelCardData(library_name="sentence-transformers" if st else "transformers", base_model=base,
                         pipeline_tag="sentence-similarity" if st else "feature-extraction",
                         tags=["bertpress", "knowledge-distillation", summary["objective"]["name"]])
    name = repo_id or r["name"]
    init = summary.get("init", {})
    lines = [f"# {name}", "",
             f"A {s['num_layers']}-layer, {s['hidden_size']}-wide student of `{source}`, distilled with "
             f"bertpress {summary['bertpress_version']} (task-agnostic knowledge distillation).",
             "", "| | student | teacher |", "|---|---:|---:|",
             f"| parameters | {s['parameters'] / 1e6:.1f}M | {t['parameters'] / 1e6:.1f}M |",
             f"| layers × width | {s['num_layers']} × {s['hidden_size']} | {t['description'].split(': ', 1)[-1]} |",
             "", "## How it was made", "",
             f"- initialised by `{init.get('name', r['student']['init'])}`"
             + (f" from teacher layers {init['layers']}" if init.get("layers") else ""),
             f"- distilled on {summary['tokens_seen']:,} tokens ({summary['steps']} steps) of "
             f"{', '.join(map(str, summary['corpus'].get('sources', [])))}",
             f"- layer mapping (student layer i learns teacher layer m[i]): {summary['mapping']}",
             *([f"- saved as {1 - avg['share']:g} × the distilled + {avg['share']:g} × the initial weights "
                f"(`train.average_with_init`); held-out loss of the saved weights "
                f"{avg['valid'].get('loss', float('nan')):.4f}"] if (avg := summary.get("average_with_init")) else []),
             "",
             *_stage_rows(summary), "",
             f"Final held-out distillation loss: {summary['final'].get('loss', float('nan')):.4f}. The full recipe "
             "is `recipe.yaml` in this repository (`bertpress distill recipe.yaml` reproduces the run); "
             "`bertpress.json` records every decision (matches, extraction plan, corpus, versions).", ""]
    if evaluation:
        lines += ["## Evaluation", "", evaluation.strip(), ""]
    lines += ["## Use", "", "```python"]
    if st:
        lines += ["from sentence_transformers import SentenceTransformer", "",
                  f'model = SentenceTransformer("{name}")', 'embeddings = model.encode(["A sentence."])']
    else:
        lines += ["from transformers import AutoModel, AutoTokenizer", "",
                  f'tokenizer = AutoTokenizer.from_pretrained("{name}")', f'model = AutoModel.from_pretrained("{name}")']
    lines += ["```", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))
