"""The model card every run writes, the publishable part of a run directory, and ``bertpress push --dry-run``."""

import json

from huggingface_hub import ModelCard

from bertpress.cli import main
from bertpress.train.card import publishable_files
from bertpress.train.run import distill


def _zero_shot_report(model_dir, tmp_path):
    """A real ``bertpress evaluate`` report of ``model_dir`` on a tiny STS-B dev set (zero-shot, seconds)."""
    import random

    from tiny_models import WORDS

    rng = random.Random(0)
    folder = tmp_path / "data" / "glue" / "STS-B"
    folder.mkdir(parents=True)
    rows = "".join(f"{i}\tmain\tf\t2012\t{i}\tn\tn\t{' '.join(rng.choices(WORDS, k=6))}\t"
                   f"{' '.join(rng.choices(WORDS, k=6))}\t{rng.uniform(0, 5):.2f}\n" for i in range(24))
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text(header + rows)
    eval_dir = tmp_path / "eval"
    assert main(["evaluate", str(model_dir), "--tasks", "stsb-zeroshot", "--data-dir", str(tmp_path / "data"),
                 "--set", "max_length=32", "--no-latency", "--output-dir", str(eval_dir),
                 "--cache-dir", str(tmp_path / "c")]) == 0
    return eval_dir


def test_card_and_publishable_files(tiny_recipe, tmp_path, capsys):
    run = distill(tiny_recipe(train={"max_steps": 4, "save_every": 2}))
    out, student = run.output_dir, run.student_dir
    card = ModelCard.load(student / "README.md")
    assert card.data.library_name == "transformers" and "bertpress" in card.data.tags
    s = run.summary
    assert f"| parameters | {s['student']['parameters'] / 1e6:.1f}M |" in card.text
    assert f"distilled on {s['tokens_seen']:,} tokens ({s['steps']} steps)" in card.text
    assert "| distill | 4 |" in card.text  # the stage table
    files = {str(f) for f in publishable_files(student)}
    assert files == {str(p.relative_to(student)) for p in student.rglob("*") if p.is_file()}  # all of student/
    assert {"config.json", "model.safetensors", "README.md", "recipe.yaml", "bertpress.json"} <= files
    assert (out / "checkpoints").is_dir() and (out / "metrics.jsonl").is_file()
    assert not any(f.startswith(("checkpoints", "tensorboard")) or f == "metrics.jsonl" or "optimizer" in f
                   for f in files), files
    eval_dir = _zero_shot_report(out, tmp_path)
    assert main(["push", str(out), "me/tiny-student", "--dry-run", "--evaluation", str(eval_dir)]) == 0
    listed = capsys.readouterr().out
    assert "-> me/tiny-student" in listed and "checkpoints" not in listed and "model.safetensors" in listed
    card = ModelCard.load(student / "README.md")  # the run directory names its student
    score = json.loads((eval_dir / "results.json").read_text())["models"][0]["tasks"]["stsb-zeroshot"]["mean"]["score"]
    assert "## Evaluation" in card.text and "STS-B 0-shot" in card.text and f"{score:.1f}" in card.text
    assert 'from_pretrained("me/tiny-student")' in card.text


def test_push_refuses_an_unfinished_run(tmp_path, capsys):
    assert main(["push", str(tmp_path), "me/x", "--dry-run"]) == 2
    assert "holds no finished run" in capsys.readouterr().err
