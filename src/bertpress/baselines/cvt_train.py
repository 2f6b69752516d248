"""Training of the CVT tagger (:mod:`bertpress.baselines.cvt`): alternating labelled and unlabelled updates, EMA,
dev loss, checkpoints with resume bit for bit, and the saved tagger with its training cost."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bertpress.atomic import atomic_dir, atomic_write_json
from bertpress.baselines.cvt import (
    AUX_VIEWS,
    IGNORE,
    CVTConfig,
    CVTTagger,
    CVTTaggerModel,
    Encoded,
    _inputs,
    collate,
    cvt_loss,
    encode,
    labeled_loss,
    learning_rate,
)
from bertpress.baselines.tags import spans, to_bioes
from bertpress.baselines.words import (
    SPECIALS,
    Vocabulary,
    build_vocabulary,
    epoch_batches,
    glove_vectors,
    teacher_vectors,
    unlabeled_sentences,
)
from bertpress.data.tasks.conll import conll_file, read_conll
from bertpress.data.tasks.files import resolve_data_dir
from bertpress.errors import BertpressError
from bertpress.progress import bars_enabled

log = logging.getLogger(__name__)



def _dev_loss(model: CVTTaggerModel, data: Encoded, batch_size: int) -> float:
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(data.words), batch_size):
            b = collate(data, np.arange(start, min(start + batch_size, len(data.words))))
            logits = model(*_inputs(b), 0.0)["primary"]
            n = int((b["labels"] != IGNORE).sum())
            total += float(labeled_loss(logits, b["labels"], 0.0)) * n
            count += n
    return total / max(count, 1)


def _span_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """Exact-match entity F1 (a training-time monitor; ``bertpress evaluate`` reports seqeval's)."""
    g = {(i, *s) for i, tags in enumerate(gold) for s in spans(tags)}
    p = {(i, *s) for i, tags in enumerate(predicted) for s in spans(tags)}
    hit = len(g & p)
    return 200.0 * hit / max(len(g) + len(p), 1)


def train_cvt(config: CVTConfig, *, resume: bool = False, overwrite: bool = False,
              stop_after: int | None = None, progress: bool = True) -> CVTTagger:
    """Train the tagger ``config`` describes; writes ``output_dir/tagger/`` (EMA weights, vocabulary, tags, training
    cost), ``metrics.jsonl`` and ``checkpoints/``. ``resume`` continues from the last checkpoint, bit for bit."""
    from tqdm.auto import tqdm

    from bertpress.train.output import check_job_dir

    c = config
    out = Path(c.output_dir)
    check_job_dir(out, label="output_dir", holds=lambda p: (p / "cvt-config.json").is_file(), job="CVT run",
                  other="output_dir", resume=resume, overwrite=overwrite, on_resume=lambda p: _check_same(p, c))
    data_dir = resolve_data_dir(c.data_dir)
    train_sents = read_conll(conll_file(data_dir, "train"))
    dev_sents = read_conll(conll_file(data_dir, "dev"))
    unlabeled = unlabeled_sentences(c.unlabeled, c.max_unlabeled_sentences) if c.semi_supervised else []
    vocab = build_vocabulary([s.tokens for s in train_sents], unlabeled, c.max_words)
    train_tags = [to_bioes(s.tags) for s in train_sents]
    tags = ("O", *sorted({t for ts in train_tags for t in ts} - {"O"}, key=lambda t: (t[2:], t)))
    tag_ids = {t: i for i, t in enumerate(tags)}
    vectors, covered = _word_vectors(c, vocab)
    log.info("CVT: %d labelled / %d unlabelled sentences, %d words (%d with a vector), %d chars, %d tags",
             len(train_sents), len(unlabeled), len(vocab.words), covered, len(vocab.chars), len(tags))

    torch.manual_seed(c.seed)
    model = CVTTaggerModel(c, len(vocab.words), vectors.shape[1], len(vocab.chars), len(tags))
    with torch.no_grad():
        model.words.weight.copy_(vectors)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=c.momentum)
    ema = [p.detach().clone() for p in model.parameters()]
    labeled = encode([s.tokens for s in train_sents], vocab, c.max_word_length, train_tags, tag_ids)
    dev_tags = [to_bioes(s.tags) for s in dev_sents]
    dev = encode([s.tokens for s in dev_sents], vocab, c.max_word_length,
                 [[t if t in tag_ids else "O" for t in ts] for ts in dev_tags], tag_ids)
    pool = encode(unlabeled, vocab, c.max_word_length) if unlabeled else None
    state = {"step": 0, "epochs": [0, 0], "positions": [0, 0], "tokens": [0, 0], "train_seconds": 0.0,
             "cpu_seconds": 0.0}
    ckpts = out / "checkpoints"
    if resume and ckpts.is_dir() and any(ckpts.glob("step-*")):
        last = max(ckpts.glob("step-*"))
        saved = torch.load(last / "state.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        for e, v in zip(ema, saved["ema"], strict=True):
            e.copy_(v)
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
        log.info("CVT: resumed from %s", last)
        log_file = out / "metrics.jsonl"
        kept = [line for line in log_file.read_text().splitlines() if json.loads(line)["step"] <= state["step"]] \
            if log_file.is_file() else []  # the interrupted run's records past the checkpoint go
        log_file.write_text("".join(f"{line}\n" for line in kept))
    else:
        if overwrite:
            shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "cvt-config.json", c.model_dump())
    metrics = (out / "metrics.jsonl").open("a", encoding="utf-8")
    if state["step"] == 0:
        metrics.write(json.dumps({"step": 0, "kind": "dev", "loss": round(_dev_loss(model, dev, 256), 6)}) + "\n")
    plans: dict[int, tuple[int, list[np.ndarray]]] = {}

    def next_batch(kind: int, source: Encoded) -> np.ndarray:
        """The next batch of labelled (kind 0) or unlabelled (1) sentences, from (epoch, position) alone."""
        if plans.get(kind, (None,))[0] != state["epochs"][kind]:
            plans[kind] = (state["epochs"][kind], epoch_batches(source.lengths, c.batch_size, c.seed * 2 + kind,
                                                                  state["epochs"][kind]))
        batches = plans[kind][1]
        idx = batches[state["positions"][kind]]
        state["positions"][kind] += 1
        if state["positions"][kind] == len(batches):
            state["epochs"][kind] += 1
            state["positions"][kind] = 0
        return idx

    def ema_model() -> CVTTaggerModel:
        copy = CVTTaggerModel(c, len(vocab.words), vectors.shape[1], len(vocab.chars), len(tags))
        with torch.no_grad():
            for p, e in zip(copy.parameters(), ema, strict=True):
                p.copy_(e)
        return copy.eval()

    end = min(c.steps, stop_after) if stop_after is not None else c.steps
    bar = tqdm(total=c.steps, initial=state["step"], desc="CVT" if c.semi_supervised else "BiLSTM", unit="step",
               disable=not (progress and bars_enabled()), mininterval=5)
    wall, cpu = time.perf_counter(), time.process_time()
    while state["step"] < end:
        step = state["step"]
        unlabeled_turn = pool is not None and step % 2 == 1
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(c, step)
        if unlabeled_turn:
            b = collate(pool, next_batch(1, pool))
            with torch.no_grad():
                primary = model(*_inputs(b), 0.0)["primary"]
            aux = model(*_inputs(b), c.dropout_unlabeled, AUX_VIEWS)
            loss = cvt_loss(aux, primary, b["mask"])
        else:
            b = collate(labeled, next_batch(0, labeled))
            logits = model(*_inputs(b), c.dropout_labeled)["primary"]
            loss = labeled_loss(logits, b["labels"], c.label_smoothing)
        if not torch.isfinite(loss):
            raise BertpressError(f"CVT: the loss became {loss.item()} at step {step + 1}: lower lr (--set lr=...)")
        optimizer.zero_grad(set_to_none=True)  # a head without gradient this step keeps its momentum as it is
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema, model.parameters(), strict=True):
                e.lerp_(p, 1 - c.ema_decay)
        state["step"] = step + 1
        state["tokens"][int(unlabeled_turn)] += int(b["mask"].sum())
        bar.update()
        record = {"step": state["step"], "kind": "unlabeled" if unlabeled_turn else "labeled",
                  "loss": round(loss.item(), 6), "lr": learning_rate(c, step)}
        if state["step"] % 50 == 0:
            metrics.write(json.dumps(record) + "\n")
        done = state["step"] == c.steps
        if (c.eval_every and state["step"] % c.eval_every == 0) or done:
            metrics.write(json.dumps({"step": state["step"], "kind": "dev",
                                      "loss": round(_dev_loss(ema_model(), dev, 256), 6)}) + "\n")
            metrics.flush()
        if (c.save_every and state["step"] % c.save_every == 0) or state["step"] == end:
            state["train_seconds"] += time.perf_counter() - wall
            state["cpu_seconds"] += time.process_time() - cpu
            wall, cpu = time.perf_counter(), time.process_time()
            with atomic_dir(ckpts / f"step-{state['step']:08d}") as tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema,
                            "rng": torch.get_rng_state(), "state": state}, tmp / "state.pt")
            for old in sorted(ckpts.glob("step-*"))[:-1]:
                shutil.rmtree(old)
    bar.close()
    metrics.close()
    tagger_model = ema_model()
    dev_f1 = _span_f1([list(s.tags) for s in dev_sents],
                      CVTTagger(tagger_model, vocab, tags, c, {}).tag([s.tokens for s in dev_sents]))
    info = {"steps": state["step"], "labeled_tokens": state["tokens"][0], "unlabeled_tokens": state["tokens"][1],
            "train_seconds": round(state["train_seconds"], 2), "cpu_seconds": round(state["cpu_seconds"], 2),
            "labeled_sentences": len(train_sents), "unlabeled_sentences": len(unlabeled),
            "words_with_vector": covered, "dev_span_f1": round(dev_f1, 4), "torch_threads": torch.get_num_threads()}
    tagger = CVTTagger(tagger_model, vocab, tags, c, info)
    if state["step"] == c.steps:
        tagger.save(out / "tagger")
    return tagger


def _word_vectors(c: CVTConfig, vocab: Vocabulary) -> tuple[Tensor, int]:
    if c.embeddings == "teacher":
        from bertpress.models.teacher import resolve_model

        return teacher_vectors(resolve_model(c.teacher), vocab.words)
    if c.embeddings == "random":
        g = torch.Generator().manual_seed(c.seed)
        table = torch.randn(len(vocab.words), c.word_dim, generator=g) * 0.1
        table[:len(SPECIALS)] = 0
        return table, 0
    return glove_vectors(Path(c.embeddings), vocab.words)


def _check_same(path: Path, c: CVTConfig) -> None:
    saved = json.loads((path / "cvt-config.json").read_text())
    now = c.model_dump()
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k) and k != "output_dir")
    if changed:
        raise BertpressError(f"cannot resume {str(path)!r}: the settings changed ({changed[0]}: "
                             f"{saved.get(changed[0])!r} -> {now.get(changed[0])!r}): resume with the original "
                             "settings, or use --overwrite / a new output_dir")

