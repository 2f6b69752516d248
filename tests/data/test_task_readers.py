"""The GLUE / SQuAD / CoNLL readers on small fixture files, including the errors for malformed rows."""

import gzip
import json

import pytest

from bertpress.data.tasks.conll import read_conll
from bertpress.data.tasks.files import find_file, resolve_data_dir
from bertpress.data.tasks.glue import (
    GLUE_TASKS,
    TextExample,
    examples_from_rows,
    glue_tsv_files,
    read_glue_tsv,
)
from bertpress.data.tasks.squad import read_squad
from bertpress.errors import BertpressError


def write(path, text, *, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


# ---------------------------------------------------------------- GLUE

def test_glue_layouts(tmp_path):
    cola = write(tmp_path / "cola.tsv", "gj04\t1\t\tThe sailors rode.\ngj04\t0\t*\tRode the sailors the.")
    assert read_glue_tsv(cola, GLUE_TASKS["cola"]) == [TextExample("The sailors rode.", None, 1),
                                                       TextExample("Rode the sailors the.", None, 0)]
    mrpc = write(tmp_path / "mrpc.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t7\t8\tA b.\tA  b!\n")
    assert read_glue_tsv(mrpc, GLUE_TASKS["mrpc"]) == [TextExample("A b.", "A  b!", 1)]
    stsb = write(tmp_path / "stsb.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
                                        "sentence2\tscore\n0\tmain\tx\t2012\t1\tnone\tnone\tA man.\tA guy.\t3.800\n")
    assert read_glue_tsv(stsb, GLUE_TASKS["stsb"]) == [TextExample("A man.", "A guy.", 3.8)]
    mnli_header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
    mnli = write(tmp_path / "mnli.tsv", mnli_header + "0\t1\t2\tfic\tP.\tH.\tneutral\tneutral\n"
                                                      "1\t1\t2\tfic\tP2.\tH2.\tcontradiction\tcontradiction\r\n")
    assert [e.label for e in read_glue_tsv(mnli, GLUE_TASKS["mnli"])] == [1, 2]
    rte = write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA\u2028b.\tC.\tnot_entailment\n")
    assert read_glue_tsv(rte, GLUE_TASKS["rte"]) == [TextExample("A\u2028b.", "C.", 1)]


def test_glue_bad_rows_name_file_and_line(tmp_path):
    header = "index\tsentence1\tsentence2\tlabel\n"
    short = write(tmp_path / "a.tsv", header + "0\tA.\tB.\tentailment\n1\tA.\tentailment\n")
    with pytest.raises(BertpressError, match=rf"^{short}:3: expected 4 tab-separated fields, found 3: fix or remove"):
        read_glue_tsv(short, GLUE_TASKS["rte"])
    label = write(tmp_path / "b.tsv", header + "0\tA.\tB.\tmaybe\n")
    with pytest.raises(BertpressError, match=rf"^{label}:2: label 'maybe' is not one of entailment, not_entailment"):
        read_glue_tsv(label, GLUE_TASKS["rte"])
    score = write(tmp_path / "c.tsv", "sentence1\tsentence2\tscore\nA.\tB.\thigh\n")
    with pytest.raises(BertpressError, match=rf"^{score}:2: score 'high' is not a number"):
        read_glue_tsv(score, GLUE_TASKS["stsb"])
    wrong = write(tmp_path / "d.tsv", "text\tlabel\nA.\t1\n")
    with pytest.raises(BertpressError, match=rf"^{wrong}:1: header lacks column 'sentence'"):
        read_glue_tsv(wrong, GLUE_TASKS["sst2"])


def test_glue_files_and_hub_rows(tmp_path, monkeypatch):
    folder = tmp_path / "glue" / "MNLI"
    for name in ("train.tsv", "dev_matched.tsv"):
        write(folder / name, "x")
    write(folder / "dev_mismatched.tsv.gz", "x", gz=True)
    files = glue_tsv_files(tmp_path, GLUE_TASKS["mnli"])
    assert {k: p.name for k, p in files.items()} == {"train": "train.tsv", "m": "dev_matched.tsv",
                                                     "mm": "dev_mismatched.tsv.gz"}
    with pytest.raises(BertpressError, match="GLUE RTE train.tsv not found in .*check --data-dir"):
        glue_tsv_files(tmp_path, GLUE_TASKS["rte"])

    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_dict({"premise": ["P."], "hypothesis": ["H."], "label": [2], "idx": [0]})
    assert examples_from_rows(GLUE_TASKS["mnli"], rows, "hub") == [TextExample("P.", "H.", 2)]
    test_split = datasets.Dataset.from_dict({"sentence": ["S."], "label": [-1]})
    with pytest.raises(BertpressError, match="label -1 is outside 0..1"):
        examples_from_rows(GLUE_TASKS["sst2"], test_split, "hub")

    monkeypatch.setenv("BERTPRESS_DATA", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    with pytest.raises(BertpressError, match="not found: pass --data-dir or set BERTPRESS_DATA"):
        resolve_data_dir(tmp_path / "nowhere")


# ---------------------------------------------------------------- SQuAD

def squad_doc(qas, context="The city of Paris is in France."):
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}


def test_squad_v1_and_v2_gz(tmp_path):
    doc = squad_doc([{"id": "q1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 12},
                                                                    {"text": "France", "answer_start": 24}]},
                     {"id": "q2", "question": "Who?", "answers": [], "is_impossible": True,
                      "plausible_answers": [{"text": "city", "answer_start": 4}]}])
    path = write(tmp_path / "dev-v2.0.json.gz", json.dumps(doc, indent=1), gz=True)
    assert find_file(tmp_path, ["dev-v2.0.json"], "dev") == path
    q1, q2 = read_squad(path)
    assert (q1.id, q1.title, q1.question, q1.answers, q1.is_impossible) == (
        "q1", "T", "Where?", (("Paris", 12), ("France", 24)), False)
    assert (q2.answers, q2.is_impossible) == ((), True)


def test_squad_errors_name_file_and_line(tmp_path):
    bad_start = squad_doc([{"id": "q1", "question": "A?", "answers": [{"text": "Paris", "answer_start": 12}]},
                           {"id": "q2", "question": "B?", "answers": [{"text": "Paris", "answer_start": 3}]}])
    path = write(tmp_path / "a.json", json.dumps(bad_start, indent=1))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if '"q2"' in t)
    with pytest.raises(BertpressError, match=rf"^{path}:{line} \(data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers\[0\]\): "
                                             "answer 'Paris' is not at character 3 of its context: fix answer_start"):
        read_squad(path)
    no_question = write(tmp_path / "b.json", json.dumps(squad_doc([{"id": "q9", "answers": []}]), indent=1))
    with pytest.raises(BertpressError, match=r":\d+ \(data\[0\]\.paragraphs\[0\]\.qas\[0\]\): missing or invalid "
                                             "'question'"):
        read_squad(no_question)
    broken = write(tmp_path / "c.json", '{"data": [\n  {"title": "x",\n  }\n]}')
    with pytest.raises(BertpressError, match=rf"^{broken}:3: invalid JSON"):
        read_squad(broken)
    unanswered = write(tmp_path / "d.json", json.dumps(squad_doc([{"id": "q", "question": "?", "answers": []}])))
    with pytest.raises(BertpressError, match="answerable question without answers"):
        read_squad(unanswered)


# ---------------------------------------------------------------- CoNLL

def test_conll_reader(tmp_path):
    text = ("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
            "Peter NNP B-NP B-PER\nBlackburn NNP B-NP I-PER\n\n\n-DOCSTART- -X- -X- O\n\nParis\tB-LOC")
    s1, s2, s3 = read_conll(write(tmp_path / "train.txt", text))
    assert s1.tokens == ("EU", "rejects", "German") and s1.tags == ("B-ORG", "O", "B-MISC")
    assert s2.tags == ("B-PER", "I-PER")
    assert s3.tokens == ("Paris",) and s3.tags == ("B-LOC",)


def test_conll_errors_name_file_and_line(tmp_path):
    missing = write(tmp_path / "a.txt", "EU NNP B-NP B-ORG\nrejects\n")
    with pytest.raises(BertpressError, match=rf"^{missing}:2: expected 'token ... tag' columns, found 'rejects'"):
        read_conll(missing)
    swapped = write(tmp_path / "b.txt", "EU B-ORG NNP\n")
    with pytest.raises(BertpressError, match=rf"^{swapped}:1: tag 'NNP' is not O or B-/I-/E-/S-TYPE"):
        read_conll(swapped)
    with pytest.raises(BertpressError, match="no sentences"):
        read_conll(write(tmp_path / "c.txt", "-DOCSTART- -X- -X- O\n\n"))
