"""XtremeDistil (issue 17): a source-task teacher, sentence-level transfer data, staged logit transfer with
gradual unfreezing and early stopping, labelled stages, the task-agnostic output and the multilingual path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

from bertpress.data.corpus import load_corpus
from bertpress.data.examples import split_sentences, text_units
from bertpress.errors import BertpressError
from bertpress.models.teacher import load_teacher
from bertpress.objectives.losses import logit_mse, task_loss
from bertpress.pipeline import distill
from bertpress.recipe import DataSpec, recipe_from_dict
from bertpress.train.callbacks import Callback
from bertpress.train.checkpoint import checkpoints

from tiny_models import tiny_tokenizer

KILLER = Path(__file__).resolve().parents[1] / "reliability" / "killer.py"
L = 2  # student layers: stages representation, logits-{head,top-1,top-2,all}, labelled-{head,top-1,top-2,all}


def xd_recipe(tmp_path: Path, teacher: Path, corpus: Path, data: Path, *, name: str = "xd", task: str = "mrpc",
              unit: str = "pairs", **schedule) -> dict:
    return {"name": name, "output_dir": str(tmp_path / name), "seed": 3,
            "teacher": {"name_or_path": str(teacher),
                        "source_task": {"task": task, "data_dir": str(data), "settings": {"epochs": 1}}},
            "student": {"num_layers": L},
            "data": {"sources": [str(corpus), {"task": task, "data_dir": str(data)}], "unit": unit,
                     "block_size": 48, "cache_dir": str(tmp_path / "cache"), "validation_fraction": 0.2},
            "schedule": {"name": "xtremedistil", "representation_steps": 4, "logit_steps": 3, "labelled_steps": 2,
                         "patience": 2, **schedule},
            "train": {"batch_size": 4, "eval_every": 2, "save_every": 3, "lr": 1e-3,
                      "mixed_precision": "no"}}  # fp32 in the subprocess too: the in-process reference is fp32 (conftest)


# -- transfer data ------------------------------------------------------------------------------------------------

def test_sentences_are_cut_at_end_punctuation_in_latin_and_cjk_scripts():
    assert split_sentences("One two. Three?  Four! five") == ["One two.", "Three?", "Four!", "five"]
    assert split_sentences("我来了。你好！好") == ["我来了。", "你好！", "好"]
    assert split_sentences("3.5 kg") == ["3.5 kg"]


def test_pairs_are_consecutive_sentences_of_one_document():
    segments = ["a1. a2. a3.", "a4.", None, "b1.", None, "c1. c2."]
    assert list(text_units(segments, "pairs")) == [("a1.", "a2."), ("a3.", "a4."), ("c1.", "c2.")]
    assert [a for a, _ in text_units(segments, "sentences")] == ["a1.", "a2.", "a3.", "a4.", "b1.", "c1.", "c2."]


def test_sentence_units_are_padded_examples_with_the_task_inputs_added(tmp_path, tiny_corpus, task_data):
    tok = tiny_tokenizer()
    pad, cls, sep = tok.pad_token_id, tok.cls_token_id, tok.sep_token_id
    lines = [s for s in tiny_corpus.read_text().splitlines() if s.strip()]
    blocks = load_corpus(DataSpec(sources=[str(tiny_corpus)], block_size=48, cache_dir=str(tmp_path)), tok)
    single = load_corpus(DataSpec(sources=[str(tiny_corpus)], unit="sentences", block_size=48,
                                  cache_dir=str(tmp_path)), tok)
    assert single.meta["key"] != blocks.meta["key"] and single.meta["unit"] == "sentences"
    assert single.meta["blocks"] == len(lines)  # one line of the tiny corpus = one sentence
    row = np.asarray(single.blocks[0])
    assert row[0] == cls and list(row[row != pad][1:-1]) == tok(lines[0], add_special_tokens=False)["input_ids"]
    assert row[(row != pad).sum() - 1] == sep and (row[(row != pad).sum():] == pad).all()
    augmented = load_corpus(DataSpec(sources=[str(tiny_corpus), {"task": "mrpc", "data_dir": str(task_data)}],
                                     unit="pairs", block_size=48, cache_dir=str(tmp_path)), tok)
    mrpc = [line.split("\t") for line in (task_data / "glue" / "MRPC" / "train.tsv").read_text().splitlines()[1:]]
    assert augmented.meta["blocks"] == len(lines) // 2 + len(mrpc)  # documents of 10 lines: 5 pairs each
    last = np.asarray(augmented.blocks[-1])
    expected = tok(mrpc[-1][3], mrpc[-1][4], padding="max_length", max_length=48)["input_ids"]
    assert list(last) == expected


def test_pair_batches_get_segment_ids_and_are_trimmed_to_their_longest_example():
    from bertpress.train.data import Batcher

    tok = tiny_tokenizer()
    enc = tok(["the city", "a river was"], ["he won", "she"], padding="max_length", max_length=16)
    batcher = Batcher(tok, masking=False, probability=0.15, seed=0, trim=True, token_types=True)
    batch = batcher(torch.tensor(enc["input_ids"]), position=0, labels=torch.tensor([[1] * 16, [2] * 16]))
    width = max(sum(m) for m in enc["attention_mask"])
    assert batch["input_ids"].shape == (2, width) and batch["labels"].shape == (2, width)
    assert batch["token_type_ids"].tolist() == [r[:width] for r in enc["token_type_ids"]]
    assert batch["attention_mask"].tolist() == [r[:width] for r in enc["attention_mask"]]


# -- losses -------------------------------------------------------------------------------------------------------

def test_logit_and_task_losses_by_hand():
    s, t = torch.tensor([[1.0, -1.0], [0.5, 2.0]]), torch.tensor([[0.0, 1.0], [0.5, 0.0]])
    assert logit_mse(s, t).item() == pytest.approx((1 + 4 + 0 + 4) / 4)
    s3, t3 = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    t3[0, 2] = 5.0  # a padded token: not counted
    assert logit_mse(s3, t3, mask=torch.tensor([[1, 1, 0]])).item() == pytest.approx(1.0)
    assert logit_mse(torch.tensor([[2.0], [0.0]]), torch.tensor([1.0, 1.0])).item() == pytest.approx(1.0)
    logp = torch.log_softmax(s, -1)
    assert task_loss(s, torch.tensor([1, 0])).item() == pytest.approx(-(logp[0, 1] + logp[1, 0]).item() / 2)
    assert task_loss(torch.tensor([[2.0], [0.0]]), torch.tensor([1.5, 0.5])).item() == pytest.approx(0.25)
    tok_labels = torch.tensor([[1, -100, 0]])
    assert task_loss(torch.zeros(1, 3, 2), tok_labels).item() == pytest.approx(np.log(2))


# -- the run ------------------------------------------------------------------------------------------------------

class Snapshots(Callback):
    """The student's weights at every stage start (and the end), and the stages entered."""

    def __init__(self) -> None:
        self.at: list[tuple[str, dict[str, torch.Tensor]]] = []

    def on_stage_start(self, distiller, stage) -> None:
        self.at.append((stage.name, {k: v.clone() for k, v in distiller.student().state_dict().items()}))


def _changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_each_stage_trains_only_its_groups_and_the_output_is_task_agnostic(tmp_path, tiny_teacher_bare,
                                                                           tiny_corpus, task_data):
    snaps = Snapshots()
    result = distill(xd_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, task_data, patience=None), callbacks=[snaps])
    final = {k: v for k, v in result.summary.items()}
    names = [n for n, _ in snaps.at]
    assert names == ["representation", "logits-head", "logits-top-1", "logits-top-2", "logits-all",
                     "labelled-head", "labelled-top-1", "labelled-top-2", "labelled-all"]
    model = AutoModelForSequenceClassification.from_pretrained(result.output_dir / "task-student")
    end = {k: v for k, v in model.state_dict().items()}
    states = [s for _, s in snaps.at] + [end]

    def group(key: str) -> str:
        if key.startswith(("classifier", "bert.pooler")):
            return "head"
        if ".layer." in key:
            return f"layer {int(key.split('.layer.')[1].split('.')[0]) + 1}"
        return "embeddings"

    trained = [{group(k) for k in _changed(states[i], states[i + 1])} for i in range(len(names))]
    assert trained[0] == {"embeddings", "layer 1", "layer 2"}  # hidden states only: the head is not reached
    for phase in (1, 5):  # logits and labelled: head, +top layer, +both layers, then everything
        assert trained[phase:phase + 4] == [{"head"}, {"head", "layer 2"}, {"head", "layer 1", "layer 2"},
                                            {"head", "layer 1", "layer 2", "embeddings"}], names[phase]
    # the published student is the plain encoder (loads as AutoModel, equal to the task student's encoder)
    encoder = AutoModel.from_pretrained(result.student_dir)
    assert type(encoder).__name__ == "BertModel"
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, end[f"bert.{k}"]), k
    assert final["task_student"] == "task-student" and final["labelled"]["task"] == "mrpc"
    assert final["teacher"]["description"].endswith("sequence-level task head, 2 outputs")
    recorded = json.loads((result.output_dir / "bertpress.json").read_text())
    assert [s["name"] for s in recorded["stages"]] == names and recorded["stages"][5]["data"] == "labelled"


def test_stage_two_loss_is_the_mse_of_student_and_teacher_logits(tmp_path, tiny_teacher_bare, tiny_corpus,
                                                                 task_data):
    """The held-out logits term at the end equals MSE(student logits, teacher logits) computed here from the saved
    task student and the fine-tuned teacher over the same held-out pairs (trimmed batches with segment ids)."""
    from bertpress.train.data import Batcher

    recipe = xd_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, task_data, labelled_steps=0, unfreeze="none",
                       representation_steps=2, logit_steps=4)
    result = distill(recipe)
    student = AutoModelForSequenceClassification.from_pretrained(result.output_dir / "task-student").eval()
    teacher = load_teacher(result.summary["teacher"]["source"])
    corpus = load_corpus(recipe_from_dict(recipe).data, teacher.tokenizer)
    batcher = Batcher(teacher.tokenizer, masking=False, probability=0.15, seed=0, trim=True, token_types=True)
    valid = torch.as_tensor(np.asarray(corpus.valid), dtype=torch.long)
    losses = []
    with torch.no_grad():
        for b in range(0, len(valid), 4):
            batch = batcher(valid[b:b + 4], position=0)
            assert batch["token_type_ids"].max() == 1
            losses.append(((student(**batch).logits - teacher.model(**batch).logits) ** 2).mean().item())
    assert result.summary["final"]["logits"] == pytest.approx(np.mean(losses), rel=1e-4)


def test_tokens_seen_counts_the_real_tokens_of_padded_examples(tmp_path, tiny_teacher_bare, tiny_corpus, task_data):
    """One epoch of the transfer set at batch size 1: tokens_seen is the number of non-padding tokens in it."""
    recipe = xd_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, task_data, labelled_steps=0, unfreeze="none")
    tokenizer = load_teacher(str(tiny_teacher_bare)).tokenizer
    corpus = load_corpus(recipe_from_dict(recipe).data, tokenizer)
    rows = np.asarray(corpus.blocks)[corpus.train_index]
    n, real = len(rows), int((rows != tokenizer.pad_token_id).sum())
    assert real < rows.size  # the examples are padded
    recipe["schedule"] |= {"representation_steps": n // 2, "logit_steps": n - n // 2, "patience": None}
    recipe["train"] |= {"batch_size": 1, "eval_every": n, "save_every": 0}
    assert distill(recipe).summary["tokens_seen"] == real


def test_early_stopping_restores_the_best_weights(tmp_path, tiny_teacher_bare, tiny_corpus, task_data):
    """A learning rate that makes the held-out loss climb: the stage stops after `patience` validations without
    improvement, and the next stage starts from the weights of the best validation, not the last."""
    recipe = xd_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, task_data, labelled_steps=0, unfreeze="none",
                       representation_steps=20, logit_steps=2, patience=2)
    recipe["train"].update(lr=0.5, warmup_ratio=0.0, max_grad_norm=0.0, eval_every=2)
    at_eval: dict[int, dict] = {}
    snaps = Snapshots()

    class Evals(Callback):
        def on_evaluate(self, distiller, step, values) -> None:
            if distiller.stage.name == "representation":
                at_eval[step] = (values["loss"], {k: v.clone() for k, v in distiller.student().state_dict().items()})

    result = distill(recipe, callbacks=[Evals(), snaps])
    rep = result.summary["early_stopping"]["representation"]
    assert rep["stopped_at"] < 20 and rep["bad"] == 2
    assert rep["best"] == min(loss for loss, _ in at_eval.values()) == at_eval[rep["best_step"]][0]
    assert at_eval[rep["stopped_at"]][0] > rep["best"]
    start_of_stage_2 = dict(snaps.at)["logits-all"]
    best = at_eval[rep["best_step"]][1]
    assert not _changed(best, start_of_stage_2) and _changed(at_eval[rep["stopped_at"]][1], start_of_stage_2)
    assert result.summary["stages"][1]["start"] == 20  # the schedule keeps its boundaries
    assert result.summary["steps"] == 22


def test_kill_inside_stage_two_then_resume_is_exact(tmp_path, tiny_teacher_bare, tiny_corpus, task_data):
    recipe = xd_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, task_data, name="ref")
    reference = load_file(str(distill(recipe).student_dir / "model.safetensors"))
    victim = xd_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, task_data, name="victim")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(victim))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def run(*args):
        return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)

    killed = run(KILLER, "after-checkpoint", 9, path, "--overwrite")  # step 9: inside logits-top-2 (10-13)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = tmp_path / "victim"
    assert [int(p.name[5:]) for p in checkpoints(out / "checkpoints")][-1] == 9
    resumed = run("-m", "bertpress", "distill", path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = load_file(str(out / "student" / "model.safetensors"))
    for k in reference:
        assert torch.equal(got[k], reference[k]), k
    ref_task = load_file(str(tmp_path / "ref" / "task-student" / "model.safetensors"))
    got_task = load_file(str(out / "task-student" / "model.safetensors"))
    assert all(torch.equal(ref_task[k], got_task[k]) for k in ref_task)


def test_a_tagger_source_task_distils_token_logits(tmp_path, tiny_teacher_bare, tiny_corpus, task_data):
    recipe = xd_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, task_data, task="conll2003", unit="sentences",
                       unfreeze="none")
    result = distill(recipe)
    tagger = AutoModelForTokenClassification.from_pretrained(result.output_dir / "task-student")
    teacher = load_teacher(str(next((tmp_path / "cache" / "teachers" / "conll2003").iterdir())))
    assert teacher.task == "token" and tagger.config.id2label == teacher.model.config.id2label
    assert result.summary["labelled"]["task"] == "conll2003"


def test_recipe_errors_name_the_fix(tmp_path, tiny_teacher_bare, tiny_corpus, task_data):
    base = xd_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, task_data)
    no_task = {**base, "teacher": {"name_or_path": str(tiny_teacher_bare)}}
    with pytest.raises(BertpressError, match="labelled_steps train on teacher.source_task's labels"):
        recipe_from_dict(no_task)
    with pytest.raises(BertpressError, match="reads logits but the teacher has neither an MLM head nor a task head"):
        distill({**no_task, "schedule": {**base["schedule"], "labelled_steps": 0}})
    with pytest.raises(BertpressError, match="choose a GLUE-format or CoNLL task"):
        distill({**base, "teacher": {**base["teacher"], "source_task": {"task": "squad"}}})
    with pytest.raises(BertpressError, match="unknown task: choose one of"):
        distill({**base, "data": {**base["data"], "sources": [{"task": "imdb"}]}})
    from bertpress.train.run import distill as bare_distill

    with pytest.raises(BertpressError, match="run the recipe with bertpress distill"):
        bare_distill(base)
    assert not (tmp_path / "xd").exists()


# -- multilingual -------------------------------------------------------------------------------------------------

MULTILINGUAL = ["Der Fluss fließt nach Norden.", "Москва — столица России.", "我来了。你好！", "La ville est grande.",
                "Die Stadt ist klein.", "Река течёт на север.", "他在家。", "Le film était bon."]


def _multilingual_teacher(path: Path) -> Path:
    """A tiny XLM-R (RoBERTa layout, one segment type, ``<s> a </s></s> b </s>``) with a WordPiece vocabulary
    built here over German, Russian, Chinese and French text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(MULTILINGUAL * 10, trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2)
    XLMRobertaModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_a_multilingual_teacher_runs_end_to_end(tmp_path):
    import random

    rng = random.Random(0)
    teacher = _multilingual_teacher(tmp_path / "xlmr")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.sample(MULTILINGUAL, 4)) for _ in range(30)) + "\n")
    sst = tmp_path / "data" / "glue" / "SST-2"
    sst.mkdir(parents=True)
    for name, n in (("train.tsv", 40), ("dev.tsv", 12)):
        rows = [(s, int(any(c in s for c in "我他"))) for s in (rng.choice(MULTILINGUAL) for _ in range(n))]
        (sst / name).write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    recipe = xd_recipe(tmp_path, teacher, corpus, tmp_path / "data", task="sst2", unit="sentences", unfreeze="none")
    result = distill(recipe)
    tok = load_teacher(str(teacher)).tokenizer
    examples = load_corpus(recipe_from_dict(recipe).data, tok)
    decoded = {tok.decode([t for t in np.asarray(row) if t not in tok.all_special_ids]).replace(" ", "")
               for row in examples.blocks}
    assert {"我来了。", "你好！", "他在家。", "москва—столицароссии."} <= decoded  # CJK full stops cut sentences
    encoder = AutoModel.from_pretrained(result.student_dir)
    assert type(encoder).__name__ == "XLMRobertaModel" and encoder.config.num_hidden_layers == L
    classifier = AutoModelForSequenceClassification.from_pretrained(result.output_dir / "task-student")
    batch = tok(["我来了。", "La ville est grande."], padding=True, return_tensors="pt")
    assert classifier(**batch).logits.shape == (2, 2)
    assert result.summary["labelled"]["unit"] == "sentences"
