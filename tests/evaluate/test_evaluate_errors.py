"""The ``bertpress evaluate`` bad-input catalogue: each case exits 2 with one line and writes no report.

Every case has a row in the "Downstream evaluation" section of docs/errors.md (checked below).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from bertpress.cli import main

from catalogue import Catalogue, truncated_copy

RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
CASES = Catalogue()
case = CASES.case


class Env:
    def __init__(self, root: Path, task_data: Path, model: Path) -> None:
        self.root, self.task_data, self.model, self.out = root, task_data, model, root / "report"

    def data(self, rel: str, text: str) -> Path:
        """A copy of the fixture data with ``rel`` replaced by ``text``."""
        data = self.root / "data"
        if not data.exists():
            shutil.copytree(self.task_data, data)
        target = data / rel
        for old in target.parent.glob(target.name.split(".")[0] + "*"):
            old.unlink()
        target.write_text(text)
        return data

    def args(self, *extra, tasks: str = "rte", data: Path | None = None) -> list[str]:
        return [str(self.model), "--tasks", tasks, "--data-dir", str(data or self.task_data),
                "--output-dir", str(self.out), "--cache-dir", str(self.root / "cache"), "--no-latency",
                *map(str, extra)]


@pytest.fixture
def env(tmp_path, task_data, tiny_pair) -> Env:
    return Env(tmp_path, task_data, tiny_pair[1])


def squad_text(answer_start: int) -> str:
    doc = {"data": [{"title": "t", "paragraphs": [{"context": "the city by the river", "qas": [
        {"id": "q1", "question": "where?", "answers": [{"text": "river", "answer_start": answer_start}]}]}]}]}
    return json.dumps(doc, indent=1)


@case("malformed GLUE TSV row")
def _(env):
    data = env.data("glue/RTE/train.tsv", RTE_HEADER + "0\ta b\tentailment\n")
    return env.args(data=data), r"glue/RTE/train\.tsv:2: expected 4 tab-separated fields, found 3: fix or remove"


@case("unknown GLUE label")
def _(env):
    data = env.data("glue/RTE/dev.tsv", RTE_HEADER + "0\ta b\tc d\tmaybe\n")
    return env.args(data=data), r"glue/RTE/dev\.tsv:2: label 'maybe' is not one of entailment, not_entailment"


@case("STS-B score that is not a number")
def _(env):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    data = env.data("glue/STS-B/train.tsv", header + "0\tm\tf\t2012\t0\tn\tn\ta b\tc d\thigh\n")
    return env.args(tasks="stsb", data=data), r"glue/STS-B/train\.tsv:2: score 'high' is not a number"


@case("GLUE TSV header without a column")
def _(env):
    data = env.data("glue/RTE/train.tsv", "index\tsentence\tlabel\n0\ta\tentailment\n")
    return env.args(data=data), r"glue/RTE/train\.tsv:1: header lacks column"


@case("invalid SQuAD JSON")
def _(env):
    data = env.data("squad/dev-v1.1.json", '{"data": [\n  {"title": "x",\n  }\n]}')
    return env.args(tasks="squad", data=data), r"squad/dev-v1\.1\.json:3: invalid JSON"


@case("SQuAD answer not at its answer_start")
def _(env):
    data = env.data("squad/dev-v1.1.json", squad_text(3))
    return env.args(tasks="squad", data=data), \
        r"squad/dev-v1\.1\.json:\d+ \(data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\]\): answer 'river' is not " \
        r"at character 3 of its context: fix answer_start"


@case("CoNLL line without a tag")
def _(env):
    data = env.data("conll2003/train.txt", "-DOCSTART- -X- -X- O\n\nrejects\nthe NN B-NP O\n")
    return env.args(tasks="conll2003", data=data), r"conll2003/train\.txt:3: expected 'token \.\.\. tag' columns"


@case("CoNLL tag outside the IOB scheme")
def _(env):
    data = env.data("conll2003/valid.txt", "EU NNP B-NP NNP\n")
    return env.args(tasks="conll2003", data=data), r"conll2003/valid\.txt:1: tag 'NNP' is not O or B-/I-/E-/S-TYPE"


@case("missing data directory")
def _(env):
    return env.args(data=env.root / "nodata"), r"data directory '.*nodata' not found: pass --data-dir or set"


@case("missing task file")
def _(env):
    data = env.root / "data"
    shutil.copytree(env.task_data, data)
    (data / "glue" / "RTE" / "dev.tsv").unlink()
    return env.args("--glue-source", "tsv", data=data), r"GLUE RTE dev.* not found in .*check --data-dir"


@case("model directory without config.json")
def _(env):
    (env.root / "empty").mkdir()
    args = env.args()
    args[0] = str(env.root / "empty")
    return args, r"has no config\.json"


@case("unknown task")
def _(env):
    return env.args(tasks="rte,sst3"), r"unknown task 'sst3'"


@case("unknown fine-tuning setting")
def _(env):
    return env.args("--set", "epoch=1"), r"--set epoch=1: no selected task has a setting 'epoch'"


@case("max_length beyond the model's positions")
def _(env):
    return env.args("--set", "max_length=512"), r"takes at most 128 tokens but rte uses max_length 512"


@case("two models with the same label")
def _(env):
    args = env.args()
    return [f"m={args[0]}", f"m={args[0]}", *args[1:]], r"two models share the label 'm': name them with LABEL=DIR"


@case("truncated .gz task file")
def _(env):
    rows = RTE_HEADER + "".join(f"{i}\tthe city was new\tthe river\tentailment\n" for i in range(3000))
    data = env.data("glue/RTE/train.tsv", "")
    (data / "glue" / "RTE" / "train.tsv").unlink()
    packed = gzip.compress(rows.encode())
    (data / "glue" / "RTE" / "train.tsv.gz").write_bytes(packed[:len(packed) // 2])
    return env.args("--glue-source", "tsv", data=data), r"train\.tsv\.gz: cannot read \(Compressed file ended"


@case("task file not in UTF-8")
def _(env):
    data = env.data("glue/RTE/dev.tsv", "")
    (data / "glue" / "RTE" / "dev.tsv").write_bytes((RTE_HEADER + "0\tcafé\tthe city\tentailment\n").encode("latin-1"))
    return env.args(data=data), r"glue/RTE/dev\.tsv:2: not UTF-8 text: re-save the file as UTF-8"


@case("empty task file")
def _(env):
    data = env.data("glue/RTE/dev.tsv", "")
    return env.args(data=data), r"glue/RTE/dev\.tsv: empty file: use the original GLUE RTE TSV"


@case("truncated model weights")
def _(env):
    args = env.args()
    args[0] = str(truncated_copy(env.model, env.root / "partial"))
    return args, r"cannot load weights of '.*partial': model\.safetensors is damaged .*re-download or re-save"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_evaluate_input(name, env, capsys):
    args, pattern = CASES[name](env)
    code = main(["evaluate", *args, "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("bertpress: error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    assert not env.out.exists(), "no report is written"


def test_catalogue_documented():
    doc = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()
    section = doc.split("## Downstream evaluation", 1)[-1].split("\n## ", 1)[0]
    for name in CASES:
        assert f"| {name} |" in section, f"docs/errors.md lacks a row for {name!r}"
