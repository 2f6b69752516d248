"""``train.teacher_cache``: the teacher's features computed once per training block, read back from disk (bf16)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertpress.errors import BertpressError
from bertpress.models.features import model_inputs, teacher_forward
from bertpress.recipe import recipe_from_dict
from bertpress.train.cohort import check_cohort
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill, prepare_run


def _cache_dirs(tmp_path):
    root = tmp_path / "cache" / "teacher"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def test_training_reads_the_cache_instead_of_running_the_teacher(tiny_recipe, tmp_path):
    recipe = tiny_recipe(output_dir=str(tmp_path / "a"), train={"max_steps": 6, "teacher_cache": True})
    first = distill(recipe)
    (cache,) = first.summary["teacher_cache"]
    assert (cache["batches_read"], cache["batches_run_live"]) == (6, 0)
    assert cache["gb"] > 0
    built = _cache_dirs(tmp_path)
    assert len(built) == 1 and {p.suffix for p in built[0].iterdir()} == {".npy", ".json"}
    stamp = {p.name: p.stat().st_mtime_ns for p in built[0].iterdir()}
    # a second run (another seed, same teacher, corpus and mapping) reads the same cache; nothing is rebuilt
    again = distill({**recipe, "output_dir": str(tmp_path / "b"), "seed": 4})
    assert again.summary["teacher_cache"][0]["path"] == cache["path"]
    assert {p.name: p.stat().st_mtime_ns for p in built[0].iterdir()} == stamp
    # another mapping reads other teacher layers: a cache of its own
    distill({**recipe, "output_dir": str(tmp_path / "c"), "mapping": {"strategy": "last"}})
    assert len(_cache_dirs(tmp_path)) == 2


def test_cached_features_are_the_live_teacher_in_bf16(tiny_recipe, tmp_path):
    prepared = prepare_run(tiny_recipe(train={"teacher_cache": True}))
    distiller = prepared.distiller
    cache = distiller.teacher_caches[0]
    distiller._enter(distiller.stages[0])
    blocks = prepared.corpus.blocks[prepared.corpus.train_index[[5, 0, 17]]]  # any order, any rows
    inputs = model_inputs(distiller.batcher(torch.as_tensor(np.asarray(blocks), dtype=torch.long), position=0))
    got, live = cache(inputs), teacher_forward(distiller.teacher_tap, **inputs)
    request = distiller.teacher_tap.request
    assert request.hidden and request.probs | request.scores
    for kind in ("hidden", "query", "key", "value", "scores", "probs"):
        # what the objective reads; not the projections the tap captured only to compute attention from
        assert getattr(got, kind).keys() == getattr(request, kind), kind
        for layer in getattr(request, kind):
            c, t = getattr(got, kind)[layer], getattr(live, kind)[layer]
            assert c.dtype == torch.float32 and c.shape == t.shape
            torch.testing.assert_close(c, t, rtol=2 ** -7, atol=1e-6)  # bf16 keeps 8 significant bits
    # a row that is not a training block (here: a held-out one) is never guessed: the live teacher runs
    held_out = prepared.corpus.blocks[prepared.corpus.valid_index[:1]]
    assert cache({"input_ids": torch.as_tensor(np.asarray(held_out), dtype=torch.long)}) is None
    assert cache.misses == 1


def test_training_on_the_cache_follows_the_live_run(tiny_recipe, tmp_path):
    """Same seed, dropout on: the cached (bf16) teacher changes the losses by bf16 rounding only."""
    runs = {}
    for cached in (False, True):
        out = tmp_path / str(cached)
        distill(tiny_recipe(output_dir=str(out), train={"max_steps": 20, "teacher_cache": cached}))
        runs[cached] = [r["loss"] for r in read_metrics(out / "metrics.jsonl", "train")]
    assert len(runs[True]) == len(runs[False]) == 4
    np.testing.assert_allclose(runs[True], runs[False], rtol=1e-2)
    assert runs[True] != runs[False]  # the cache was read


def test_resume_with_the_cache_is_exact(tiny_recipe, tmp_path):
    common = {"train": {"max_steps": 30, "save_every": 10, "teacher_cache": True}}
    full = distill(tiny_recipe(output_dir=str(tmp_path / "full"), **common))
    cut = tiny_recipe(output_dir=str(tmp_path / "cut"), **common)
    distill(cut, stop_after=15)
    resumed = distill(cut, resume=True)
    a = load_file(str(full.output_dir / "student" / "model.safetensors"))
    b = load_file(str(resumed.output_dir / "student" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_refusals_name_the_fix_and_leave_no_output(tiny_recipe, tmp_path):
    masked = tiny_recipe(output_dir=str(tmp_path / "m"), objective={"name": "distilbert"},
                         train={"teacher_cache": True})
    with pytest.raises(BertpressError, match="masks the teacher's input afresh every step"):
        distill(masked)
    too_big = tiny_recipe(output_dir=str(tmp_path / "big"), train={"teacher_cache": True,
                                                                    "teacher_cache_max_gb": 1e-6})
    with pytest.raises(BertpressError, match=r"over train.teacher_cache_max_gb=1e-06: raise it, cap data.max_blocks"):
        distill(too_big)
    assert not (tmp_path / "m").exists() and not (tmp_path / "big").exists()
    assert _cache_dirs(tmp_path) == []
    pairs = tiny_recipe(output_dir=str(tmp_path / "p"), data={"unit": "pairs"}, train={"teacher_cache": True})
    with pytest.raises(BertpressError, match="needs packed blocks"):
        distill(pairs)


def test_a_cohort_refuses_the_cache(tiny_recipe, tmp_path):
    a = recipe_from_dict(tiny_recipe(output_dir=str(tmp_path / "a")))
    b = recipe_from_dict(tiny_recipe(output_dir=str(tmp_path / "b"), train={"teacher_cache": True}))
    with pytest.raises(BertpressError, match="cohort member 2 sets train.teacher_cache"):
        check_cohort([a, b])
