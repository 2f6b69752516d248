"""Cross-View Training (Clark, Luong, Manning and Le, EMNLP 2018): a BiLSTM tagger trained semi-supervised.

Following the authors' code (tensorflow/models ``research/cvt_text``): words (an embedding times a learned scale)
and characters (a CNN of widths 2/3/4, max-pooled) feed two separately bidirectional LSTM layers, the second reading
the first's forward and backward outputs. The **primary** head (a projection of both layers, ReLU, a linear layer)
learns from labelled sentences with label smoothing. On unlabelled sentences the primary head, run without dropout
and without gradient, teaches five **auxiliary** heads that see restricted views: ``full`` (both layers, no
ReLU), ``forwards`` / ``backwards`` (the first layer's forward / backward state at t), ``future`` (the forward state
at t predicts the label at t+1) and ``past`` (the backward state at t predicts the label at t-1); their loss is the
sum over views of the KL divergence to the primary's predictions (the authors write it as cross-entropy: same
gradient). Labelled and unlabelled minibatches alternate 1:1, each an SGD-momentum update with the authors'
schedule; evaluation uses an exponential moving average of the weights. Tags are BIOES inside, IOB2 outside.

Defaults are the authors' (``base/configure.py``) except the sizes, the number of steps and the warm-up, which are
cut to fit about an hour on 2 CPU cores (theirs: 1024/512-unit LSTMs, 200k steps, 5k warm-up, GloVe 300d; here
0.57 s per step at batch 64 on 2 AMD EPYC cores, so 6000 steps take about 57 minutes). With ``semi_supervised:
false`` it is the supervised BiLSTM-CNN tagger the paper compares against.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError, model_validator
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bertpress.atomic import atomic_dir, atomic_write_json
from bertpress.baselines.tags import to_iob2
from bertpress.baselines.words import (
    Vocabulary,
)
from bertpress.config import PACKAGED_TEACHER, Strict, apply_overrides, format_errors, load_yaml
from bertpress.errors import BertpressError

log = logging.getLogger(__name__)

IGNORE = -100
#: view name -> (input representation, ReLU, label offset): what each head sees and which label it predicts
VIEWS: dict[str, tuple[str, bool, int]] = {
    "primary": ("both", True, 0), "full": ("both", False, 0), "forwards": ("fw", True, 0),
    "backwards": ("bw", True, 0), "future": ("fw", True, 1), "past": ("bw", True, -1),
}
AUX_VIEWS = tuple(v for v in VIEWS if v != "primary")


class CVTConfig(Strict):
    """One CVT (or supervised BiLSTM) training run on CoNLL-2003."""

    name: str = "cvt"
    output_dir: str = Field(description="where the tagger, its checkpoints and metrics go")
    seed: int = 0
    data_dir: str | None = Field(None, description="folder with conll2003/ (default $BERTPRESS_DATA or ../shared/data)")
    semi_supervised: bool = Field(True, description="false: the supervised BiLSTM (no unlabelled batches)")
    unlabeled: list[str] = Field([], description="corpus sources of unlabelled sentences (files, globs, .gz)")
    max_unlabeled_sentences: int = Field(200_000, ge=1)
    embeddings: str = Field("teacher", description="word vectors: teacher (mean of the teacher's input embeddings "
                                                   "of each word's pieces), random, or a GloVe-format text file")
    teacher: str = Field(PACKAGED_TEACHER, description="model whose input embeddings initialise the word vectors")
    max_words: int = Field(50_000, ge=100, description="vocabulary: all labelled words + the most frequent "
                                                       "unlabelled ones up to this size")
    word_dim: int = Field(300, ge=1, description="word vector size with embeddings: random")
    char_dim: int = Field(50, ge=1)
    char_filters: int = Field(100, ge=1, description="filters per width")
    char_widths: list[int] = Field([2, 3, 4], min_length=1)
    max_word_length: int = Field(20, ge=1)
    lstm1: int = Field(256, ge=1, description="first BiLSTM layer: units per direction (authors: 1024)")
    lstm1_proj: int = Field(128, ge=1, description="its output projection (authors: 512; >= lstm1 means none)")
    lstm2: int = Field(128, ge=1, description="second BiLSTM layer: units per direction (authors: 512)")
    head: int = Field(128, ge=1, description="hidden size of every prediction head (authors: 512)")
    dropout_labeled: float = Field(0.5, ge=0, lt=1)
    dropout_unlabeled: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(0.5, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_steps: int = Field(1000, ge=1, description="authors: 5000 of 200k steps")
    lr_decay: float = Field(0.005, ge=0, description="lr = lr0 * min(step, warmup)/warmup / (1 + decay*sqrt(step))")
    grad_clip: float = Field(1.0, gt=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    ema_decay: float = Field(0.998, ge=0, lt=1)
    batch_size: int = Field(64, ge=1)
    steps: int = Field(6000, ge=1, description="updates, labelled and unlabelled together (authors: 200k)")
    eval_every: int = Field(1000, ge=0, description="dev loss every N steps (0: only at the end)")
    save_every: int = Field(1000, ge=0, description="checkpoint every N steps (0: never)")

    @model_validator(mode="after")
    def _consistent(self) -> CVTConfig:
        if self.semi_supervised and not self.unlabeled:
            raise ValueError("semi_supervised needs unlabeled sources: set unlabeled (e.g. the Wikipedia shards) or "
                             "semi_supervised: false")
        return self


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CVTConfig:
    """A validated config from a YAML file (or only ``overrides``, ``KEY=VALUE``); errors are one line per field."""
    data: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise BertpressError(f"CVT recipe {str(path)!r} not found: give the path of a YAML file")
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    try:
        return CVTConfig.model_validate(apply_overrides(data, overrides or []))
    except ValidationError as e:
        raise BertpressError(format_errors(e, source=str(path or "CVT settings"))) from None


# ---------------------------------------------------------------- the model


class CharCNN(nn.Module):
    """Character embeddings -> one convolution per width -> ReLU -> max over the characters of a word."""

    def __init__(self, n_chars: int, dim: int, filters: int, widths: list[int]) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, dim)
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, w) for w in widths)
        self.min_length = max(widths)

    def forward(self, chars: Tensor) -> Tensor:  # [N, L] character ids of N words -> [N, filters * len(widths)]
        if chars.shape[1] < self.min_length:
            chars = F.pad(chars, (0, self.min_length - chars.shape[1]))
        x = self.embed(chars)  # [N, L, dim]
        # each width as one matrix product over the unfolded windows: the same as conv1d, several times faster
        # on CPUs for these small channel counts
        out = []
        for conv in self.convs:
            w = conv.kernel_size[0]
            windows = x.unfold(1, w, 1).flatten(2)  # [N, L-w+1, dim*w], (dim, w) order like conv1d's weight
            out.append(F.relu(windows @ conv.weight.flatten(1).T + conv.bias).amax(1))
        return torch.cat(out, -1)


class Head(nn.Module):
    """Projection (of the view's inputs, concatenated), ReLU unless ``activate`` is false, linear to the tags."""

    def __init__(self, in_dim: int, hidden: int, n_tags: int, activate: bool) -> None:
        super().__init__()
        self.project, self.out, self.activate = nn.Linear(in_dim, hidden), nn.Linear(hidden, n_tags), activate

    def forward(self, x: Tensor) -> Tensor:
        h = self.project(x)
        return self.out(F.relu(h) if self.activate else h)


class CVTTaggerModel(nn.Module):
    def __init__(self, c: CVTConfig, n_words: int, word_dim: int, n_chars: int, n_tags: int) -> None:
        super().__init__()
        self.words = nn.Embedding(n_words, word_dim)
        self.scale = nn.Parameter(torch.ones(()))
        self.chars = CharCNN(n_chars, c.char_dim, c.char_filters, c.char_widths)
        proj = c.lstm1_proj if c.lstm1_proj < c.lstm1 else 0
        self.half = proj or c.lstm1
        self.lstm1 = nn.LSTM(word_dim + c.char_filters * len(c.char_widths), c.lstm1, batch_first=True,
                             bidirectional=True, proj_size=proj)
        self.lstm2 = nn.LSTM(2 * self.half, c.lstm2, batch_first=True, bidirectional=True)
        dims = {"both": 2 * self.half + 2 * c.lstm2, "fw": self.half, "bw": self.half}
        self.heads = nn.ModuleDict({v: Head(dims[src], c.head, n_tags, relu) for v, (src, relu, _) in VIEWS.items()})

    def _bilstm(self, lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]

    def forward(self, words: Tensor, chars: Tensor, char_index: Tensor, lengths: Tensor, dropout: float,
                views: tuple[str, ...] = ("primary",)) -> dict[str, Tensor]:
        """Logits ``[B, T, tags]`` of each view, from word ids ``[B, T]``, the character ids ``[U, L]`` of the
        batch's distinct words and each position's row in them ``char_index [B, T]`` (the CNN runs once per
        distinct word); ``dropout`` on the word vectors, the character features and each LSTM layer's outputs (the
        authors' places)."""
        def drop(x: Tensor) -> Tensor:
            return F.dropout(x, dropout, training=dropout > 0)

        x = torch.cat([drop(self.words(words)) * self.scale, drop(self.chars(chars)[char_index])], -1)
        uni = drop(self._bilstm(self.lstm1, x, lengths))
        bi = drop(self._bilstm(self.lstm2, uni, lengths))
        inputs = {"both": torch.cat([uni, bi], -1), "fw": uni[..., :self.half], "bw": uni[..., self.half:]}
        return {v: self.heads[v](inputs[VIEWS[v][0]]) for v in views}


# ---------------------------------------------------------------- losses


def labeled_loss(logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """Cross-entropy with label smoothing over real words: ``mean_t −Σ_c ((1−ε)·y_tc + ε/C) · log softmax(z_t)_c``
    (Szegedy et al., 2016; CVT's supervised loss, ``tagging_module.py``)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE,
                           label_smoothing=smoothing)


def cvt_loss(aux: dict[str, Tensor], primary: Tensor, mask: Tensor) -> Tensor:
    """Cross-view loss (Clark et al., 2018, eq. 2): ``Σ_views mean_{t: m_t m_{t+d}} KL(p_θ(y_{t+d}) ‖ p_view(y | x_t))``
    where ``p_θ`` is the primary head's softmax (constant: no gradient) and ``d`` the view's label offset
    (future +1, past −1, else 0); zero when every auxiliary head predicts what the primary does."""
    total = primary.new_zeros(())
    for view, logits in aux.items():
        d = VIEWS[view][2]
        target = torch.roll(primary, -d, dims=1) if d else primary
        m = mask * torch.roll(mask, -d, dims=1) if d else mask
        log_p = F.log_softmax(target.detach().float(), -1)
        kl = F.kl_div(F.log_softmax(logits.float(), -1), log_p, log_target=True, reduction="none").sum(-1)
        total = total + (kl * m).sum() / m.sum().clamp_min(1)
    return total


def learning_rate(c: CVTConfig, step: int) -> float:
    """The authors' schedule (``multitask_model.py``): linear warm-up, then ``1 / (1 + decay·√step)``."""
    return c.lr * min(step, c.warmup_steps) / c.warmup_steps / (1 + c.lr_decay * math.sqrt(step))


# ---------------------------------------------------------------- batches


@dataclass
class Encoded:
    """Sentences as model inputs."""

    words: list[list[int]]
    chars: list[list[list[int]]]
    labels: list[list[int]] | None = None

    @property
    def lengths(self) -> list[int]:
        return [len(w) for w in self.words]


def encode(sentences: list[tuple[str, ...]], vocab: Vocabulary, max_word_length: int,
           tags: list[list[str]] | None = None, tag_ids: dict[str, int] | None = None) -> Encoded:
    words = [vocab.word_ids(s) for s in sentences]
    chars = [vocab.char_ids(s, max_word_length) for s in sentences]
    labels = None if tags is None else [[IGNORE, *(tag_ids[t] for t in ts), IGNORE] for ts in tags]
    return Encoded(words, chars, labels)


def collate(data: Encoded, idx: np.ndarray) -> dict[str, Tensor]:
    """Padded ``words [B,T]``, the character ids of the batch's distinct words ``chars [U,L]`` (row 0: padding)
    with each position's row ``char_index [B,T]``, ``lengths [B]``, ``mask [B,T]`` (1 on real words, not on
    ``<start>``/``<end>``/padding) and ``labels [B,T]`` when the sentences have tags."""
    t = max(len(data.words[i]) for i in idx)
    rows: dict[tuple[int, ...], int] = {(): 0}
    index = torch.zeros(len(idx), t, dtype=torch.long)
    w = torch.zeros(len(idx), t, dtype=torch.long)
    mask = torch.zeros(len(idx), t)
    for row, i in enumerate(idx):
        n = len(data.words[i])
        w[row, :n] = torch.tensor(data.words[i])
        index[row, :n] = torch.tensor([rows.setdefault(tuple(c), len(rows)) for c in data.chars[i]])
        mask[row, 1:n - 1] = 1
    width = max(map(len, rows))
    chars = torch.zeros(len(rows), width, dtype=torch.long)
    for c, r in rows.items():
        chars[r, :len(c)] = torch.tensor(c, dtype=torch.long)
    out = {"words": w, "chars": chars, "char_index": index, "lengths": torch.tensor([len(data.words[i]) for i in idx]),
           "mask": mask}
    if data.labels is not None:
        lab = torch.full((len(idx), t), IGNORE, dtype=torch.long)
        for row, i in enumerate(idx):
            lab[row, :len(data.labels[i])] = torch.tensor(data.labels[i])
        out["labels"] = lab
    return out


def _inputs(b: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return b["words"], b["chars"], b["char_index"], b["lengths"]


# ---------------------------------------------------------------- the tagger (saved form)


class CVTTagger:
    """A trained tagger (EMA weights) with its vocabulary: ``tag(sentences)`` gives IOB2 tags."""

    FILES = ("cvt.json", "tagger.pt")

    def __init__(self, model: CVTTaggerModel, vocab: Vocabulary, tags: tuple[str, ...], config: CVTConfig,
                 info: dict[str, Any]) -> None:
        self.model, self.vocab, self.tags, self.config, self.info = model.eval(), vocab, tags, config, info

    @staticmethod
    def is_tagger_dir(path: str | Path) -> bool:
        return (Path(path) / "cvt.json").is_file()

    @classmethod
    def load(cls, path: str | Path) -> CVTTagger:
        path = Path(path)
        if not cls.is_tagger_dir(path) or not (path / "tagger.pt").is_file():
            raise BertpressError(f"{path} holds no CVT tagger (cvt.json, tagger.pt): give the output_dir of a "
                                 "finished 'bertpress cvt' run")
        meta = json.loads((path / "cvt.json").read_text())
        config = CVTConfig.model_validate(meta["config"])
        vocab = Vocabulary(tuple(meta["words"]), tuple(meta["chars"]))
        model = CVTTaggerModel(config, len(vocab.words), meta["word_dim"], len(vocab.chars), len(meta["tags"]))
        model.load_state_dict(torch.load(path / "tagger.pt", map_location="cpu", weights_only=True))
        return cls(model, vocab, tuple(meta["tags"]), config, meta["info"])

    def save(self, path: Path) -> None:
        with atomic_dir(path) as tmp:
            torch.save(self.model.state_dict(), tmp / "tagger.pt")
            atomic_write_json(tmp / "cvt.json", {
                "config": self.config.model_dump(), "words": list(self.vocab.words), "chars": list(self.vocab.chars),
                "word_dim": self.model.words.embedding_dim, "tags": list(self.tags), "info": self.info})

    @property
    def parameters(self) -> int:
        return sum(p.numel() for n, p in self.model.named_parameters() if not _aux_only(n))

    @torch.inference_mode()
    def tag(self, sentences: list[tuple[str, ...]], batch_size: int = 64) -> list[list[str]]:
        """IOB2 tags of each sentence (the primary head's argmax, read as BIOES spans)."""
        data = encode(sentences, self.vocab, self.config.max_word_length)
        order = np.argsort([len(s) for s in sentences], kind="stable")
        out: list[list[str]] = [[] for _ in sentences]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            b = collate(data, idx)
            best = self.model(*_inputs(b), 0.0)["primary"].argmax(-1)
            for row, i in enumerate(idx):
                n = len(sentences[i])
                out[i] = to_iob2([self.tags[int(k)] for k in best[row, 1:n + 1]])
        return out


def _aux_only(name: str) -> bool:
    """Parameters only the auxiliary heads use (not needed to tag)."""
    return name.startswith("heads.") and not name.startswith("heads.primary.")
