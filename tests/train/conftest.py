import pytest


@pytest.fixture
def tiny_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus):
    """A recipe dict for a 2-layer student of the tiny MLM teacher on the tiny corpus."""

    def make(**sections):
        recipe = {
            "output_dir": str(tmp_path / "run"),
            "seed": 3,
            "teacher": {"name_or_path": str(tiny_teacher_mlm)},
            "student": {"num_layers": 2, "init": "random"},
            "data": {"sources": [str(tiny_corpus)], "block_size": 32, "validation_fraction": 0.1,
                     "cache_dir": str(tmp_path / "cache")},
            "objective": {"name": "tinybert"},
            "train": {"max_steps": 40, "batch_size": 8, "lr": 1e-3, "eval_every": 20, "save_every": 20,
                      "log_every": 5, "num_workers": 0},
        }
        for k, v in sections.items():
            recipe[k] = {**recipe[k], **v} if isinstance(v, dict) and isinstance(recipe.get(k), dict) else v
        return recipe

    return make
