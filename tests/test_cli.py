"""The ``bertpress`` command end to end on a tiny teacher (subprocess, as a user runs it)."""

import json
import os
import subprocess
import sys

import yaml
from transformers import AutoModel


def bertpress(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "bertpress", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_distill_end_to_end_and_errors(tmp_path, tiny_teacher_bare, tiny_corpus):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "out"),
        "teacher": {"name_or_path": str(tiny_teacher_bare)},
        "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
        "objective": {"name": "minilm"},
        "train": {"max_steps": 100, "batch_size": 4, "num_workers": 0, "eval_every": 0, "save_every": 0},
    }))
    ok = bertpress("distill", recipe, "--max-steps", 6, "--set", "student.num_layers=1")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "student written to" in ok.stdout
    summary = json.loads((tmp_path / "out" / "bertpress.json").read_text())
    assert summary["steps"] == 6 and summary["student"]["num_layers"] == 1
    assert AutoModel.from_pretrained(tmp_path / "out" / "student").config.num_hidden_layers == 1

    again = bertpress("distill", recipe)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("bertpress: error: output_dir")
    assert "--resume" in again.stderr

    bad = bertpress("distill", recipe, "--set", "train.lr=-1", "--output-dir", tmp_path / "other")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("bertpress: error: --set train.lr=-1: train.lr: Input should be greater than 0 "
                                  "(got -1): use a larger value")
    assert not (tmp_path / "other").exists(), "a rejected recipe writes nothing"


def test_common_flags_before_and_after_the_verb(tmp_path, tiny_teacher_bare, tiny_corpus):
    """``-q`` and ``--no-progress`` after the verb silence the log and every bar; ``-v`` before the verb is kept;
    ``-v`` with ``-q`` is refused."""
    from bertpress.cli import build_parser

    args = build_parser().parse_args(["-v", "recipe", "check", "r.yaml"])
    assert args.verbose and not args.quiet and not args.no_progress
    args = build_parser().parse_args(["evaluate", "m", "-q", "--no-progress"])
    assert args.quiet and args.no_progress and not args.verbose
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "out"), "teacher": {"name_or_path": str(tiny_teacher_bare)},
        "student": {"num_layers": 1},
        "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
        "train": {"max_steps": 3, "batch_size": 4, "num_workers": 0, "eval_every": 0, "save_every": 0}}))
    quiet = bertpress("distill", recipe, "-q", "--no-progress")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "distilling" not in quiet.stderr and " INFO " not in quiet.stderr
    assert "student written to" in quiet.stdout
    both = bertpress("-v", "distill", recipe, "-q")
    assert both.returncode == 2 and "-v and -q contradict each other" in both.stderr


def test_several_recipes_train_as_a_cohort(tmp_path, tiny_teacher_bare, tiny_corpus):
    paths = []
    for name, objective in (("a", "minilm"), ("b", "tinybert")):
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump({
            "output_dir": str(tmp_path / name), "teacher": {"name_or_path": str(tiny_teacher_bare)},
            "student": {"num_layers": 1}, "objective": {"name": objective},
            "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
            "train": {"max_steps": 4, "batch_size": 4, "num_workers": 0, "eval_every": 0, "save_every": 0}}))
    ok = bertpress("distill", *paths)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.count("student written to") == 2
    assert "cohort of 2: 4 teacher forwards for 8 member batches" in ok.stdout
    clash = bertpress("distill", *paths, "--output-dir", tmp_path / "same", "--overwrite")
    assert clash.returncode == 2
    assert clash.stderr.strip().splitlines()[-1].startswith("bertpress: error: two cohort members write")
