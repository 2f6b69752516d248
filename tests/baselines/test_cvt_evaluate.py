"""``bertpress evaluate`` with a CVT tagger beside an encoder: one table, the tagger scored as it is."""

from __future__ import annotations

import json

import pytest

from bertpress.baselines.cvt import CVTConfig, CVTTagger
from bertpress.baselines.cvt_train import train_cvt
from bertpress.cli import main
from bertpress.data.tasks.conll import read_conll
from bertpress.evaluate.metrics import ner_metrics

from tiny_models import save_tiny_teacher


def test_compare_a_tagger_with_an_encoder(tmp_path, cvt_settings, conll_dir, capsys):
    run = tmp_path / "cvt"
    train_cvt(CVTConfig.model_validate(cvt_settings(output_dir=str(run), steps=60, ema_decay=0.9)), progress=False)
    encoder = save_tiny_teacher(tmp_path / "enc", mlm=False, num_hidden_layers=1, max_position_embeddings=128)
    args = ["evaluate", f"cvt={run}", f"enc={encoder}", "--tasks", "conll2003", "--data-dir", str(conll_dir),
            "--set", "epochs=1", "--cache-dir", str(tmp_path / "c"), "--output-dir", str(tmp_path / "out"),
            "--no-progress"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    cvt, enc = report["models"]
    tagger = CVTTagger.load(run / "tagger")

    dev = read_conll(conll_dir / "conll2003" / "valid.txt")
    expected = ner_metrics([s.tags for s in dev], tagger.tag([s.tokens for s in dev]))
    assert cvt["kind"] == "tagger" and cvt["tasks"]["conll2003"]["mean"]["score"] == pytest.approx(expected["f1"])
    test = read_conll(conll_dir / "conll2003" / "test.txt")  # the test set is scored too, as test_* metrics
    on_test = ner_metrics([s.tags for s in test], tagger.tag([s.tokens for s in test]))
    assert cvt["tasks"]["conll2003"]["mean"]["test_f1"] == pytest.approx(on_test["f1"])
    assert 0 <= enc["tasks"]["conll2003"]["mean"]["test_f1"] <= 100 and "test_score" not in enc["tasks"]["conll2003"]["mean"]
    assert cvt["parameters"] == tagger.parameters and cvt["latency"] is None
    assert cvt["training"]["tokens"] == tagger.info["labeled_tokens"] + tagger.info["unlabeled_tokens"]
    assert enc["kind"] == "encoder" and enc["latency"] is not None and set(enc["training"]) == {"finetune"}
    from transformers import AutoTokenizer

    from bertpress.evaluate.ner import encode

    train = read_conll(conll_dir / "conll2003" / "train.txt")  # one epoch: every training token once
    labels = {t: i for i, t in enumerate(sorted({t for s in train for t in s.tags}))}
    features, _ = encode(train, AutoTokenizer.from_pretrained(encoder), 128, labels)
    cost = enc["training"]["finetune"]["conll2003"]
    assert cost["tokens"] == sum(len(f["input_ids"]) for f in features) and cost["cpu_seconds"] > 0
    assert cvt["sentence_latency"]["n"] == enc["sentence_latency"]["n"] == 30  # the fixture's dev sentences
    md = (tmp_path / "out" / "results.md").read_text()
    assert md.startswith("| Model | CoNLL03 | Avg | Params | Size | CPU ms, batch 1 | CPU ms, batch 32 | "
                         "CPU ms / sentence | Training cost |\n")
    assert f"| cvt | {expected['f1']:.1f} | {expected['f1']:.1f} |" in md and "CPU-s" in md
    assert f"| fine-tune {cost['cpu_seconds']:,.0f} CPU-s / {cost['tokens'] / 1e6:.1f}M tok |" in md
    assert "| CoNLL03 | lr | – | 5e-05 |" in md


def test_a_tagger_is_refused_on_other_tasks(tmp_path, cvt_settings, conll_dir, capsys):
    run = tmp_path / "cvt"
    train_cvt(CVTConfig.model_validate(cvt_settings(output_dir=str(run), steps=4, save_every=0)), progress=False)
    assert main(["evaluate", str(run), "--tasks", "rte", "--data-dir", str(conll_dir), "--no-latency"]) == 2
    assert "is a tagger: it is evaluated on conll2003 only" in capsys.readouterr().err


def test_cvt_command(tmp_path, cvt_settings, capsys):
    settings = cvt_settings(output_dir=str(tmp_path / "cli"), steps=6, save_every=3)
    recipe = tmp_path / "cvt.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(settings))
    assert main(["cvt", str(recipe), "--set", "steps=4", "--no-progress"]) == 0
    assert "tagger written to" in capsys.readouterr().out
    assert CVTTagger.load(tmp_path / "cli" / "tagger").info["steps"] == 4
    assert main(["cvt", str(recipe), "--set", "steps=4"]) == 2  # the directory holds a run
    assert "already holds a run" in capsys.readouterr().err
    assert main(["cvt", str(recipe), "--set", "lstm2=-1"]) == 2
    assert "lstm2" in capsys.readouterr().err
