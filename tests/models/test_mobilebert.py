"""MobileBERT students: the architecture from a BERT teacher, the teacher-embeddings initialiser (PCA through the
factorised trigram table) and the mobilebert objective on tiny models."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, MobileBertModel

from bertpress.errors import BertpressError
from bertpress.init.base import InitContext, initialise
from bertpress.init.embeddings import pca_factors
from bertpress.models.architectures import architecture_config
from bertpress.models.student import StudentShape
from bertpress.objectives.base import ObjectiveContext
from bertpress.objectives.mobilebert import MobileBertObjectiveOptions, mobilebert_matches
from bertpress.train.build import build_run

from tiny_models import tiny_config

SMALL = {"bottleneck": 16, "embedding_size": 8, "num_ffn": 2}


def recipe(tmp_path, teacher, **student) -> dict:
    return {"output_dir": str(tmp_path / "o"), "teacher": {"name_or_path": str(teacher)},
            "student": {"architecture": "mobilebert", "init": "teacher-embeddings",
                        "architecture_options": SMALL, **student},
            "objective": {"name": "mobilebert"}, "data": {"sources": ["x.txt"], "block_size": 32}}


@pytest.mark.parametrize("normalization", ["no_norm", "layer_norm"])
def test_student_builds_and_round_trips_through_automodel(tmp_path, tiny_teacher_bare, normalization):
    run = build_run(recipe(tmp_path, tiny_teacher_bare, architecture_options={**SMALL, "normalization": normalization}))
    student = run.student.eval()
    c = student.config
    assert isinstance(student, MobileBertModel)
    # defaults: the teacher's depth and width (features match without a projection), heads, 4x-bottleneck FFNs
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (4, 32, 4, 64)
    assert (c.true_hidden_size, c.embedding_size, c.num_feedforward_networks, c.normalization_type) == (
        16, 8, 2, normalization)
    assert (c.hidden_dropout_prob, c.attention_probs_dropout_prob) == (0.0, 0.1)  # the authors' config
    norm = type(student.encoder.layer[0].attention.output.LayerNorm).__name__
    assert norm == ("NoNorm" if normalization == "no_norm" else "LayerNorm")
    student.save_pretrained(tmp_path / "s")
    loaded = AutoModel.from_pretrained(tmp_path / "s").eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        assert torch.equal(student(input_ids=ids).last_hidden_state, loaded(input_ids=ids).last_hidden_state)


@pytest.mark.parametrize(("shape", "options", "message"), [
    (StudentShape(), {"bottleneck": 64}, r"bottleneck 64 is wider than the block width 32: set bottleneck <= "
                                         r"student.hidden_size"),
    (StudentShape(num_heads=3), {"bottleneck": 16, "embedding_size": 8},
     r"student.num_heads 3 does not divide the bottleneck width 16: set student.num_heads to 1, 2, 4 or a bottleneck "
     r"divisible by 3"),
    (StudentShape(), {"bottleneck": 16, "embedding_size": 48}, r"embedding_size 48 is wider than the block width 32"),
])
def test_invalid_shapes_are_refused_in_one_line(shape, options, message):
    with pytest.raises(BertpressError, match=message) as err:
        architecture_config("mobilebert", tiny_config(), shape, options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("init", "message"), [
    ("select", r"initialiser 'select' copies teacher layers into a student of the teacher's type, but the student "
               r"is 'mobilebert' and the teacher 'bert': use init 'teacher-embeddings' or 'random'"),
    ("etd-impt", r"ETD extracts teacher weights into a student of the teacher's type, but the student is "
                 r"'mobilebert' and the teacher 'bert': use init 'teacher-embeddings' or 'random'"),
])
def test_copying_initialisers_refuse_another_student_type(tmp_path, tiny_teacher_bare, init, message):
    with pytest.raises(BertpressError, match=message) as err:
        build_run(recipe(tmp_path, tiny_teacher_bare, init=init))
    assert "\n" not in str(err.value)


def test_teacher_embeddings_reconstruct_the_teacher_tokens_by_pca(tmp_path, tiny_teacher_bare):
    run = build_run(recipe(tmp_path, tiny_teacher_bare))
    plan = initialise("teacher-embeddings", InitContext(run.teacher, run.student, 0))
    assert plan["copied"][1:] == ["embedding projection", "position_embeddings", "token_type_embeddings"]
    teacher_tokens = run.teacher.model.get_input_embeddings().weight.detach()
    emb = run.student.embeddings
    # the trigram projection reads [next | token | previous]: the token's own block reconstructs the teacher vector
    rebuilt = emb.word_embeddings.weight @ emb.embedding_transformation.weight[:, 8:16].T \
        + emb.embedding_transformation.bias
    singular = torch.linalg.svdvals(teacher_tokens - teacher_tokens.mean(0))
    best = singular[8:].pow(2).sum()  # Eckart-Young: what any rank-8 (affine) reconstruction must leave out
    assert (rebuilt - teacher_tokens).pow(2).sum().item() == pytest.approx(best.item(), rel=1e-4)
    assert torch.count_nonzero(emb.embedding_transformation.weight[:, :8]) == 0
    assert torch.equal(emb.position_embeddings.weight, run.teacher.parts.embeddings.position_embeddings.weight)
    kept = 1 - best / singular.pow(2).sum()
    assert plan["copied"][0] == f"word_embeddings (PCA to 8 dims, {100 * kept:.1f}% of the variance)"


def test_pca_factors_are_exact_at_full_rank():
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    codes, basis, mean = pca_factors(x, 6)
    assert torch.allclose(codes @ basis.T + mean, x, atol=1e-5)


def test_objective_terms_per_layer_and_projection_when_the_block_is_narrower(tmp_path, tiny_teacher_bare):
    run = build_run(recipe(tmp_path, tiny_teacher_bare, num_layers=2, hidden_size=24, num_heads=4)
                    | {"mapping": {"layers": [2, 4]}})
    objective = run.stages[0].objective
    assert objective.describe()["projection"] is True
    assert objective.weights == {"feature": 50.0, "attention": 0.5, "mean": 2500.0, "variance": 2.5}
    ctx = ObjectiveContext(run.teacher.model.config, run.student_config, [2, 4], False, False)
    matches = mobilebert_matches(MobileBertObjectiveOptions(), ctx)
    assert [(str(m.student), str(m.teacher), m.loss) for m in matches[:4]] == [
        ("hidden:1", "hidden:2", "layer_norm_mse"), ("attention_scores:1", "attention_scores:2", "relation_kl"),
        ("hidden:1", "hidden:2", "mean_mse"), ("hidden:1", "hidden:2", "variance_l1")]
    assert matches[1].heads == 4
