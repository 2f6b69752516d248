"""Cross-View Training: what each view sees, the cross-view loss, tag schemes, EMA, training, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertpress.baselines.cvt import (
    AUX_VIEWS,
    CVTConfig,
    CVTTagger,
    CVTTaggerModel,
    cvt_loss,
    learning_rate,
    load_config,
)
from bertpress.baselines.cvt_train import train_cvt
from bertpress.baselines.tags import spans, to_bioes, to_iob2
from bertpress.errors import BertpressError


def _model(**changes) -> CVTTaggerModel:
    c = CVTConfig(output_dir="x", semi_supervised=False, char_dim=4, char_filters=3, lstm1=10, lstm1_proj=6,
                  lstm2=5, head=7, **changes)
    torch.manual_seed(0)
    return CVTTaggerModel(c, n_words=30, word_dim=8, n_chars=20, n_tags=5).eval()


def _flat(chars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T, L]`` character ids as one row per position and its index."""
    b, t, length = chars.shape
    return chars.reshape(b * t, length), torch.arange(b * t).reshape(b, t)


def _inputs(words: list[int]):
    w = torch.tensor([[2, *words, 3]])
    chars = torch.tensor([[[2, 3, 0]] + [[2, 5 + x % 10, 3] for x in words] + [[2, 3, 0]]])
    return (w, *_flat(chars), torch.tensor([w.shape[1]]))


def test_each_view_sees_only_its_side():
    """forwards/future at t depend on words <= t only; backwards/past on words >= t; full and primary on all."""
    model = _model()
    a, b = [5, 6, 7, 8, 9, 10], [5, 6, 7, 20, 21, 22]  # differ from word 3 (position 4, after <start>) on
    out_a = model(*_inputs(a), 0.0, ("primary", *AUX_VIEWS))
    out_b = model(*_inputs(b), 0.0, ("primary", *AUX_VIEWS))
    for view in ("forwards", "future"):
        torch.testing.assert_close(out_a[view][0, :4], out_b[view][0, :4], atol=0, rtol=0)
        assert not torch.allclose(out_a[view][0, 4:], out_b[view][0, 4:])
    a2, b2 = [20, 21, 22, 8, 9, 10], [5, 6, 7, 8, 9, 10]  # differ up to word 2 (position 3)
    out_a, out_b = (model(*_inputs(x), 0.0, ("primary", *AUX_VIEWS)) for x in (a2, b2))
    for view in ("backwards", "past"):
        torch.testing.assert_close(out_a[view][0, 4:], out_b[view][0, 4:], atol=0, rtol=0)
        assert not torch.allclose(out_a[view][0, :4], out_b[view][0, :4])
    for view in ("primary", "full"):
        assert not torch.allclose(out_a[view][0, 5:], out_b[view][0, 5:])


def test_padding_does_not_reach_the_backward_view():
    """In a batch, a short sentence's backward states are what they are alone (packed sequences)."""
    model = _model()
    w1, c1, i1, _ = _inputs([5, 6, 7])
    w2, c2, _, _ = _inputs([8, 9, 10, 11, 12])
    words = torch.zeros(2, 7, dtype=torch.long)
    words[0, :5], words[1] = w1[0], w2[0]
    chars = torch.zeros(2, 7, 3, dtype=torch.long)
    chars[0, :5], chars[1] = c1, c2
    batched = model(words, *_flat(chars), torch.tensor([5, 7]), 0.0, ("backwards",))["backwards"][0, :5]
    alone = model(w1, c1, i1, torch.tensor([5]), 0.0, ("backwards",))["backwards"][0]
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=1e-5)


def test_cross_view_loss_is_zero_when_views_agree_and_trains_only_the_views():
    torch.manual_seed(0)
    primary = torch.randn(2, 6, 5, requires_grad=True)
    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]], dtype=torch.float)
    same = {"full": primary.detach().clone(), "forwards": primary.detach().clone(),
            "future": torch.roll(primary.detach(), -1, dims=1), "past": torch.roll(primary.detach(), 1, dims=1)}
    assert float(cvt_loss(same, primary, mask)) == pytest.approx(0.0, abs=1e-6)
    aux = {v: torch.randn(2, 6, 5, requires_grad=True) for v in AUX_VIEWS}
    loss = cvt_loss(aux, primary, mask)
    loss.backward()
    assert loss.item() > 0 and primary.grad is None  # the primary head's predictions are constants
    assert all(aux[v].grad.abs().sum() > 0 for v in AUX_VIEWS)
    # padding and <start>/<end> (mask 0) never count; the future view at the last word has no target
    assert aux["future"].grad[0, 3].abs().sum() == 0 and aux["future"].grad[0, 2].abs().sum() > 0
    assert aux["past"].grad[0, 1].abs().sum() == 0 and aux["full"].grad[0, 0].abs().sum() == 0


def test_character_cnn_is_conv1d():
    """The unfolded matrix products compute what ``nn.Conv1d`` would (then ReLU and max over characters)."""
    import torch.nn.functional as F

    from bertpress.baselines.cvt import CharCNN

    torch.manual_seed(0)
    cnn = CharCNN(30, 8, 5, [2, 3, 4])
    chars = torch.randint(0, 30, (6, 7))
    x = cnn.embed(chars).transpose(1, 2)
    expected = torch.cat([F.relu(conv(x)).amax(-1) for conv in cnn.convs], -1)
    torch.testing.assert_close(cnn(chars), expected, atol=1e-5, rtol=1e-5)
    assert cnn(chars[:, :2]).shape == (6, 15)  # shorter than the widest filter: padded


def test_batches_run_the_character_cnn_once_per_distinct_word():
    from bertpress.baselines.cvt import Encoded, collate

    data = Encoded(words=[[2, 7, 8, 7, 3], [2, 8, 3]], chars=[[[2, 3], [2, 9, 3], [2, 4, 3], [2, 9, 3], [2, 3]],
                                                              [[2, 3], [2, 4, 3], [2, 3]]])
    b = collate(data, [0, 1])
    assert b["chars"].shape[0] == 4  # padding, <start>/<end>, and the two distinct words
    assert b["char_index"].tolist() == [[1, 2, 3, 2, 1], [1, 3, 1, 0, 0]]
    assert b["mask"].tolist() == [[0, 1, 1, 1, 0], [0, 1, 0, 0, 0]]


@pytest.mark.parametrize(("tags", "bioes"), [
    (["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"], ["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "S-ORG"]),
    (["I-PER", "I-PER", "I-ORG", "O", "I-MISC"], ["B-PER", "E-PER", "S-ORG", "O", "S-MISC"]),  # IOB1
])
def test_tag_schemes_round_trip(tags, bioes):
    assert to_bioes(tags) == bioes
    assert to_iob2(bioes) == to_iob2(tags)
    assert to_bioes(to_iob2(bioes)) == bioes
    assert spans(bioes) == spans(tags)


def test_broken_predictions_read_as_a_scorer_would():
    assert spans(["O", "I-PER", "E-PER", "E-PER", "S-LOC"]) == [(1, 3, "PER"), (3, 4, "PER"), (4, 5, "LOC")]
    assert to_iob2(["B-PER", "I-ORG"]) == ["B-PER", "B-ORG"]


def test_learning_rate_follows_the_authors_schedule():
    c = CVTConfig(output_dir="x", semi_supervised=False, warmup_steps=5000)
    assert learning_rate(c, 0) == 0.0
    assert learning_rate(c, 2500) == pytest.approx(0.5 * 0.5 / (1 + 0.005 * 2500 ** 0.5))
    assert learning_rate(c, 10000) == pytest.approx(0.5 / (1 + 0.005 * 100))


def test_training_lowers_dev_loss_and_tags(cvt_settings):
    settings = cvt_settings(steps=400, eval_every=200, ema_decay=0.9, save_every=100)
    c = load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in settings.items()])
    tagger = train_cvt(c, progress=False)
    out = c.output_dir
    dev = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines() if "\"dev\"" in line]
    assert [d["step"] for d in dev] == [0, 200, 400] and dev[-1]["loss"] < 0.2 * dev[0]["loss"]
    assert tagger.info["steps"] == 400 and tagger.info["unlabeled_tokens"] > 0
    assert tagger.info["dev_span_f1"] > 20  # all-O (the start) scores 0
    saved = CVTTagger.load(f"{out}/tagger")
    sentences = [("he", "won", "the", "Film"), ("North", "river", "city")]
    assert saved.tag(sentences) == tagger.tag(sentences)
    assert all(len(t) == len(s) for t, s in zip(tagger.tag(sentences), sentences, strict=True))


def test_ema_weights(cvt_settings, tmp_path):
    """Steps 1 and 2: lr 0 at step 0 leaves the weights w0; the tagger holds d·w0 + (1−d)·w2."""
    c = CVTConfig.model_validate(cvt_settings(steps=2, save_every=1, eval_every=0, ema_decay=0.9))
    tagger = train_cvt(c, progress=False, stop_after=1)
    w0 = {k: v.clone() for k, v in tagger.model.state_dict().items()}
    tagger = train_cvt(c, progress=False, resume=True)
    w2 = torch.load(f"{c.output_dir}/checkpoints/step-00000002/state.pt", weights_only=False)["model"]
    for k, v in tagger.model.state_dict().items():
        torch.testing.assert_close(v, 0.9 * w0[k] + 0.1 * w2[k], atol=1e-6, rtol=1e-5)


def test_same_seed_same_tagger_and_resume_is_exact(cvt_settings, tmp_path):
    a = train_cvt(CVTConfig.model_validate(cvt_settings(output_dir=str(tmp_path / "a"))), progress=False)
    b = train_cvt(CVTConfig.model_validate(cvt_settings(output_dir=str(tmp_path / "b"))), progress=False)
    cut = CVTConfig.model_validate(cvt_settings(output_dir=str(tmp_path / "cut")))
    train_cvt(cut, progress=False, stop_after=20)
    c = train_cvt(cut, progress=False, resume=True)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
        assert torch.equal(v, c.model.state_dict()[k]), k
    assert a.info["labeled_tokens"] == c.info["labeled_tokens"]


def test_supervised_only_reads_no_unlabeled_text(cvt_settings):
    tagger = train_cvt(CVTConfig.model_validate(cvt_settings(semi_supervised=False, unlabeled=[], steps=10)),
                       progress=False)
    assert tagger.info["unlabeled_tokens"] == 0 and tagger.info["unlabeled_sentences"] == 0


def test_glove_file(cvt_settings, tmp_path):
    glove = tmp_path / "vectors.txt"
    glove.write_text("".join(f"{w} {' '.join(['0.5'] * 6)}\n" for w in ("the", "city", "film")))
    tagger = train_cvt(CVTConfig.model_validate(cvt_settings(embeddings=str(glove), steps=2, save_every=0)),
                       progress=False)
    assert tagger.model.words.embedding_dim == 6 and tagger.info["words_with_vector"] == 3


@pytest.mark.parametrize(("changes", "message"), [
    ({"embeddings": "/nonexistent/glove.txt"}, "embeddings file '/nonexistent/glove.txt' does not exist"),
    ({"unlabeled": []}, "semi_supervised needs unlabeled sources"),
    ({"lstm1": 0}, "lstm1"),
])
def test_bad_settings_are_one_line(cvt_settings, changes, message):
    with pytest.raises(BertpressError, match=message) as e:
        train_cvt(load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in cvt_settings(**changes).items()]),
                  progress=False)
    assert "\n" not in str(e.value)


def test_glove_without_a_single_vocabulary_word(cvt_settings, tmp_path):
    glove = tmp_path / "other.txt"
    glove.write_text("zebra 0.1 0.2\nquokka 0.3 0.4\n")
    with pytest.raises(BertpressError, match="no word of the vocabulary has a vector"):
        train_cvt(CVTConfig.model_validate(cvt_settings(embeddings=str(glove))), progress=False)
