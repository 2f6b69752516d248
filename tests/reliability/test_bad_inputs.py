"""The bad-input catalogue (docs/errors.md): each input gives one clear line, a non-zero exit, and no output.

Each case runs the real CLI entry point in-process on tiny models.
"""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from bertpress.cli import main

from catalogue import Catalogue, assert_one_line_error, truncated_copy
from tiny_models import save_tiny_teacher, tiny_tokenizer

CASES = Catalogue()
case = CASES.case


@pytest.fixture
def env(tmp_path, tiny_teacher_mlm, tiny_teacher_bare, tiny_corpus):
    class Env:
        root = tmp_path
        out = tmp_path / "out"
        mlm, bare, corpus = tiny_teacher_mlm, tiny_teacher_bare, tiny_corpus

        def recipe(self, **sections):
            r = {"output_dir": str(self.out), "teacher": {"name_or_path": str(self.mlm)},
                 "student": {"num_layers": 2, "init": "random"},
                 "data": {"sources": [str(self.corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
                 "objective": {"name": "tinybert"},
                 "train": {"max_steps": 2, "batch_size": 4, "num_workers": 0, "eval_every": 0, "save_every": 0}}
            for k, v in sections.items():
                r[k] = {**r[k], **v} if isinstance(v, dict) and isinstance(r.get(k), dict) else v
            path = tmp_path / "recipe.yaml"
            path.write_text(yaml.safe_dump(r))
            return path
    return Env()


@case("missing teacher")
def _(env):
    return [env.recipe(teacher={"name_or_path": str(env.root / "no-such-model")})], r"teacher directory .*no-such-model. does not exist: fix the path"


@case("teacher directory without config.json")
def _(env):
    (env.root / "empty-model").mkdir()
    return [env.recipe(teacher={"name_or_path": str(env.root / "empty-model")})], r"has no config.json"


@case("corrupt teacher weights")
def _(env):
    broken = env.root / "broken"
    shutil.copytree(env.mlm, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    return [env.recipe(teacher={"name_or_path": str(broken)})], r"cannot load teacher weights .*re-download"


@case("logit loss without an MLM head")
def _(env):
    return [env.recipe(teacher={"name_or_path": str(env.bare)}, objective={"name": "distilbert", "alpha_ce": 5.0})], \
        r"objective.alpha_ce needs a masked-LM head but the teacher has none"


@case("tokenizer/vocabulary mismatch")
def _(env):
    tok = tiny_tokenizer()
    tok.add_tokens(["zebra"])
    tok.save_pretrained(env.root / "other-tok")
    return [env.recipe(student={"tokenizer": str(env.root / "other-tok")})], r"does not match the teacher's"


@case("student larger than the teacher for extraction")
def _(env):
    return [env.recipe(student={"init": "etd-rand", "hidden_size": 64, "num_heads": 4})], \
        r"student.hidden_size 64 is larger than the teacher's 32"


@case("hidden size not divisible by heads")
def _(env):
    return [env.recipe(student={"hidden_size": 30, "num_heads": 4})], r"30 is not divisible by student.num_heads 4: use a head count that divides the width, e.g. 2, 3, 5"


@case("mapping of wrong length")
def _(env):
    return [env.recipe(mapping={"strategy": "explicit", "layers": [1, 2, 3]})], r"has 3 entries but the student has 2"


@case("mapping out of range")
def _(env):
    return [env.recipe(mapping={"layers": [2, 9]})], r"teacher layers \[9\] outside 1\.\.4"


@case("unknown objective (loss) name")
def _(env):
    return [env.recipe(objective={"name": "tinybertt"})], r"unknown objective 'tinybertt': choose one of"


@case("unknown initialiser name")
def _(env):
    return [env.recipe(student={"init": "etd"})], r"unknown initialiser 'etd': choose one of"


@case("unknown mapping name")
def _(env):
    return [env.recipe(mapping={"strategy": "top"})], r"unknown mapping strategy 'top'"


@case("empty corpus")
def _(env):
    (env.root / "empty.txt").write_text("\n\n")
    return [env.recipe(data={"sources": [str(env.root / "empty.txt")]})], r"the corpus is empty"


@case("only binary corpus files")
def _(env):
    (env.root / "x.bin").write_bytes(bytes(range(256)) * 8)
    return [env.recipe(data={"sources": [str(env.root / "x.bin")]})], r"every corpus file was skipped"


@case("malformed JSONL corpus line")
def _(env):
    (env.root / "c.jsonl").write_text('{"text": "the city"}\n{oops}\n')
    return [env.recipe(data={"sources": [str(env.root / "c.jsonl")]})], r"c.jsonl:2: not a valid JSON line"


@case("corpus smaller than one batch")
def _(env):
    (env.root / "small.txt").write_text("the city was new " * 30 + "\n")
    return [env.recipe(data={"sources": [str(env.root / "small.txt")]}, train={"batch_size": 64})], \
        r"fewer than one global batch \(64\)"


@case("zero steps")
def _(env):
    return [env.recipe(train={"max_steps": 0})], r"train.max_steps: Input should be greater than 0"


@case("negative batch size")
def _(env):
    return [env.recipe(train={"batch_size": -1})], r"train.batch_size: Input should be greater than 0"


@case("zero learning rate")
def _(env):
    return [env.recipe(train={"lr": 0})], r"train.lr: Input should be greater than 0"


@case("block longer than the teacher's positions")
def _(env):
    return [env.recipe(data={"block_size": 128})], r"data.block_size 128 exceeds the teacher's 64 positions"


@case("fp16 without a GPU")
def _(env):
    return [env.recipe(train={"mixed_precision": "fp16"})], r"fp16 needs a CUDA GPU"


@case("missing recipe file")
def _(env):
    return [env.root / "nope.yaml"], r"recipe .*nope.yaml' not found"


@case("invalid YAML")
def _(env):
    bad = env.root / "bad.yaml"
    bad.write_text("train: {max_steps: 3\n")
    return [bad], r"invalid YAML at line"


@case("resume with nothing to resume")
def _(env):
    return [env.recipe(), "--resume"], r"nothing to resume"


def _gz(text: bytes, keep: float = 1.0) -> bytes:
    data = gzip.compress(text)
    return data[:int(len(data) * keep)]


@case("truncated .gz corpus file")
def _(env):
    # a partial download: the gzip stream ends early, well past the first 8 KiB of text
    (env.root / "wiki.txt.gz").write_bytes(_gz(env.corpus.read_bytes() * 20, keep=0.5))
    return [env.recipe(data={"sources": [str(env.root / "wiki.txt.gz")]})], \
        r"wiki\.txt\.gz: truncated or corrupt gzip file \(EOFError.*re-download or re-create it"


@case("truncated .gz JSONL corpus file")
def _(env):
    records = b"".join(b'{"text": "the city was new and the river was small"}\n' for _ in range(3000))
    (env.root / "c.jsonl.gz").write_bytes(_gz(records, keep=0.5))
    return [env.recipe(data={"sources": [str(env.root / "c.jsonl.gz")]})], r"c\.jsonl\.gz: truncated or corrupt gzip"


@case(".gz corpus file that is not gzip")
def _(env):
    (env.root / "plain.txt.gz").write_bytes(b"the city was new\n" * 50)
    return [env.recipe(data={"sources": [str(env.root / "plain.txt.gz")]})], \
        r"plain\.txt\.gz: truncated or corrupt gzip file \(BadGzipFile"


@case("empty .gz corpus file")
def _(env):
    (env.root / "empty.txt.gz").write_bytes(gzip.compress(b""))
    return [env.recipe(data={"sources": [str(env.root / "empty.txt.gz")]})], r"the corpus is empty \(0 text lines"


@case("corpus in another encoding")
def _(env):
    text = "".join(f"café {line}\n" for line in env.corpus.read_text().splitlines() if line)
    (env.root / "latin1.txt").write_bytes(text.encode("latin-1"))
    return [env.recipe(data={"sources": [str(env.root / "latin1.txt")]})], \
        r"the corpus is empty: 0 text lines read and \d+ skipped as not utf-8: set data.encoding"


@case("unknown corpus encoding")
def _(env):
    return [env.recipe(data={"encoding": "latin-9x"})], r"data.encoding: unknown encoding 'latin-9x'"


@case("ASCII-only PDF among corpus files")
def _(env):
    (env.root / "paper.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" * 40)
    return [env.recipe(data={"sources": [str(env.root / "paper.pdf")]})], r"every corpus file was skipped"


@case("saved dataset without the text column")
def _(env):
    import datasets

    datasets.Dataset.from_dict({"body": ["the city"] * 4}).save_to_disk(str(env.root / "ds"))
    return [env.recipe(data={"sources": [str(env.root / "ds")]})], r"dataset '.*ds' has no column 'text' \(columns: body\): set data.text_field"


@case("truncated teacher weights")
def _(env):
    broken = truncated_copy(env.mlm, env.root / "partial")
    return [env.recipe(teacher={"name_or_path": str(broken)})], r"cannot load teacher weights .*re-download"


@case("output directory on a virtual file system")
def _(env):
    return [env.recipe(output_dir="/proc/bertpress-run")], r"is on a virtual file system .*choose a directory on a disk"


@case("bad --set value")
def _(env):
    return [env.recipe(), "--set", "train.lr=abc"], r"error: --set train.lr=abc: train.lr: Input should be a valid number"


@case("empty recipe file")
def _(env):
    (env.root / "empty.yaml").write_text("# nothing yet\n")
    return [env.root / "empty.yaml"], r"empty.yaml: the recipe is empty: write its sections"


@case("heads that do not divide the width")
def _(env):
    return [env.recipe(student={"hidden_size": 32, "num_heads": 5})], \
        r"student.hidden_size 32 is not divisible by student.num_heads 5"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env, capsys):
    args, pattern = CASES[name](env)
    code = main(["distill", *map(str, args)])
    assert_one_line_error(code, capsys.readouterr().err, pattern)
    assert not env.out.exists(), "a rejected run writes no output"


@pytest.mark.parametrize("name", ["heads that do not divide the width", "bad --set value", "empty recipe file"])
def test_recipe_check_rejects_what_distill_rejects(name, env, capsys):
    """``bertpress recipe check`` finds every recipe-only mistake ``distill`` would (no teacher needed)."""
    args, pattern = CASES[name](env)
    code = main(["recipe", "check", *map(str, args)])
    assert_one_line_error(code, capsys.readouterr().err, pattern)


def test_failed_setup_leaves_no_output(env, monkeypatch):
    """A run whose set-up fails after the output directory was opened leaves the disk as it was: no recipe.yaml
    that would make a corrected re-run "already hold a run", and a run being replaced is put back."""
    from bertpress.train import run

    def broken(*a, **kw):
        raise RuntimeError("set-up failed")

    recipe = env.recipe()
    with monkeypatch.context() as m:
        m.setattr(run, "Distiller", broken)
        with pytest.raises(RuntimeError):
            run.distill(recipe)
    assert not env.out.exists()
    assert main(["distill", str(recipe)]) == 0, "the corrected re-run is not refused"
    before = {p.name: p.read_bytes() for p in env.out.iterdir() if p.is_file()}
    with monkeypatch.context() as m:
        m.setattr(run, "Distiller", broken)
        with pytest.raises(RuntimeError):
            run.distill(recipe, overwrite=True)
    assert {p.name: p.read_bytes() for p in env.out.iterdir() if p.is_file()} == before, "the old run is back"
    assert not list(env.root.glob(".out.replaced")), "no backup left behind"


def test_saved_dataset_directory_as_a_path_source(env):
    """A ``datasets`` directory named by a plain path string (as documented) is read as a dataset."""
    import datasets

    from bertpress.data.corpus import load_corpus
    from bertpress.recipe import DataSpec

    lines = [x for x in env.corpus.read_text().splitlines() if x]
    datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(env.root / "ds"))
    as_path = load_corpus(DataSpec(sources=[str(env.root / "ds")], block_size=32, cache_dir=str(env.root / "c1")),
                          tiny_tokenizer())
    as_spec = load_corpus(DataSpec(sources=[{"dataset": str(env.root / "ds")}], block_size=32,
                                   cache_dir=str(env.root / "c2")), tiny_tokenizer())
    assert as_path.meta["lines"] == len(lines)
    assert np.array_equal(np.asarray(as_path.blocks), np.asarray(as_spec.blocks))


def test_other_encoding_read_with_data_encoding(env):
    from bertpress.data.corpus import load_corpus
    from bertpress.recipe import DataSpec

    text = env.corpus.read_text().replace("the ", "thé ")
    (env.root / "latin1.txt").write_bytes(text.encode("latin-1"))
    (env.root / "utf8.txt").write_text(text)
    latin = load_corpus(DataSpec(sources=[str(env.root / "latin1.txt")], block_size=32, encoding="latin-1",
                                 cache_dir=str(env.root / "c")), tiny_tokenizer())
    utf8 = load_corpus(DataSpec(sources=[str(env.root / "utf8.txt")], block_size=32,
                                cache_dir=str(env.root / "c")), tiny_tokenizer())
    assert latin.meta["skipped_lines"] == 0 and latin.meta["key"] != utf8.meta["key"]
    assert np.array_equal(np.asarray(latin.blocks), np.asarray(utf8.blocks))


def test_repeated_or_decreasing_mapping_is_allowed_and_logged(env, caplog):
    from bertpress.objectives.mapping import resolve_mapping

    with caplog.at_level("WARNING"):
        assert resolve_mapping("explicit", 2, 4, [2, 2]) == [2, 2]
        assert resolve_mapping("explicit", 2, 4, [4, 2]) == [4, 2]
        assert resolve_mapping("explicit", 2, 4, [1, 3]) == [1, 3]
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 2
    assert "[2, 2] repeats teacher layer 2: allowed" in notes[0]
    assert "[4, 2] goes down" in notes[1]


def test_existing_other_run_refused_unless_flag(env, capsys):
    recipe = env.recipe()
    assert main(["distill", str(recipe)]) == 0
    before = sorted(p.name for p in env.out.iterdir())
    assert main(["distill", str(recipe)]) == 2
    assert "already holds a run: pass --resume to continue it, --overwrite to replace it" in capsys.readouterr().err
    assert sorted(p.name for p in env.out.iterdir()) == before
    (env.root / "stranger").mkdir()
    (env.root / "stranger" / "notes.txt").write_text("mine")
    assert main(["distill", str(recipe), "--output-dir", str(env.root / "stranger"), "--overwrite"]) == 2
    assert "holds no bertpress run" in capsys.readouterr().err
    assert (env.root / "stranger" / "notes.txt").read_text() == "mine"


def test_non_utf8_lines_skipped_with_count(env):
    from bertpress.data.corpus import load_corpus
    from bertpress.recipe import DataSpec

    text = env.corpus.read_bytes()
    (env.root / "mixed.txt.gz").write_bytes(gzip.compress(b"caf\xe9 bad line\n" + text))
    c = load_corpus(DataSpec(sources=[str(env.root / "mixed.txt.gz")], block_size=32,
                             cache_dir=str(env.root / "c2")), tiny_tokenizer())
    assert c.meta["skipped_lines"] == 1 and len(c.blocks) > 10


def test_too_little_disk_space(env, monkeypatch, capsys):
    import shutil as sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    assert main(["distill", str(env.recipe(train={"save_every": 1}))]) == 2
    assert "MiB free under" in capsys.readouterr().err
    assert not env.out.exists()


def test_teacher_without_mask_token_for_mlm(env, tmp_path, capsys):
    teacher = save_tiny_teacher(tmp_path / "nomask", mlm=True)
    tok = tiny_tokenizer()
    tok.mask_token = None
    tok.save_pretrained(teacher)
    assert main(["distill", str(env.recipe(teacher={"name_or_path": str(teacher)}, objective={"name": "distilbert"}))]) == 2
    assert "no mask token" in capsys.readouterr().err


def test_catalogue_documented():
    doc = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()
    for name in CASES:
        assert f"| {name} |" in doc, f"docs/errors.md lacks a row for {name!r}"
