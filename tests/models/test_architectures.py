"""``student.architecture``: the registry that builds the student's config, and its refusals."""

import pytest

from bertpress.errors import BertpressError
from bertpress.models.anatomy import SUPPORTED_MODEL_TYPES
from bertpress.models.architectures import ARCHITECTURES, architecture_config
from bertpress.models.student import StudentShape, student_config
from bertpress.train.build import build_run, resolve_recipe

from tiny_models import tiny_config


def test_every_supported_type_has_an_architecture():
    assert set(ARCHITECTURES.names()) == set(SUPPORTED_MODEL_TYPES)


def test_the_default_is_the_teachers_own_type():
    cfg = tiny_config()
    shape = StudentShape(2, 16, 2, 32)
    assert architecture_config(None, cfg, shape).to_dict() == architecture_config("bert", cfg, shape).to_dict() \
        == student_config(cfg, shape).to_dict()


def test_another_type_than_the_teachers_is_refused(tiny_teacher_mlm, tmp_path):
    recipe = {"output_dir": str(tmp_path / "o"), "teacher": {"name_or_path": str(tiny_teacher_mlm)},
              "student": {"num_layers": 2, "architecture": "roberta"}, "data": {"sources": ["x.txt"]}}
    with pytest.raises(BertpressError, match=r"student.architecture 'roberta' builds a smaller roberta from a roberta "
                                             r"teacher, but the teacher is 'bert': leave student.architecture out"):
        build_run(recipe)


@pytest.mark.parametrize(("student", "message"), [
    ({"architecture": "albert"}, r"student.architecture: unknown student architecture 'albert': choose one "
                                 r"of bert, camembert"),
    ({"architecture": "bert", "architecture_options": {"bottleneck": 128}},
     r"student architecture 'bert' takes no options \(got \['bottleneck'\]\): remove student.architecture_options"),
])
def test_bad_architecture_is_one_line(student, message):
    with pytest.raises(BertpressError, match=message) as err:
        resolve_recipe({"output_dir": "o", "data": {"sources": ["x.txt"]}, "student": student})
    assert "\n" not in str(err.value)
