"""The distillation student trains with :mod:`bertpress.models.dropout` (cheaper masks on CPU)."""

from torch import nn

from bertpress.models.dropout import FastDropout, use_fast_dropout
from bertpress.train.run import prepare_run


def test_the_students_dropout_modules_are_replaced(tiny_recipe):
    prepared = prepare_run(tiny_recipe(student={"num_layers": 2, "init": "select"}))
    student = prepared.distiller.student()
    assert student.config.hidden_dropout_prob == 0.1  # the fixture keeps BERT's dropout
    fast = [m for m in student.modules() if isinstance(m, nn.Dropout)]
    assert fast and all(type(m) is FastDropout and m.p == 0.1 for m in fast)
    assert len(fast) == 1 + 3 * 2  # embeddings; per layer: attention probabilities, attention output, FFN output
    assert use_fast_dropout(student) == 0
    assert all(type(m) is nn.Dropout for m in prepared.distiller.teacher.model.modules() if isinstance(m, nn.Dropout))
