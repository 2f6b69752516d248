"""``bertpress export``: ONNX, optimised ONNX and int8 match eager PyTorch on a tiny model; bad input is one line."""

import json

import numpy as np
import pytest
import torch

from bertpress.cli import main

from tiny_models import save_tiny_teacher

ort = pytest.importorskip("onnxruntime")


def test_export_formats_match_eager(tmp_path, capsys):
    model_dir = save_tiny_teacher(tmp_path / "m", mlm=False, max_position_embeddings=128)
    assert main(["export", str(model_dir), "--seq-len", "24", "--rounds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "| onnx-int8 |" in printed and "| eager PyTorch |" in printed
    out = model_dir / "onnx"
    report = json.loads((out / "export.json").read_text())
    assert report["parity_ok"] == {"onnx": True, "onnx-optimized": True, "onnx-int8": True}
    assert report["parity"]["onnx"]["max_abs_diff_b32"] <= 1e-4
    assert set(report["latency_ms"]) == {"eager", "onnx", "onnx-optimized", "onnx-int8"}
    # the exported graph takes other batch sizes and lengths (dynamic axes) and pads correctly
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    ids = torch.randint(5, 100, (3, 11))
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    got = ort.InferenceSession(str(out / "model.optimized.onnx")).run(
        None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    assert np.abs(got - ref)[mask.numpy().astype(bool)].max() < 1e-4
    assert (out / "tokenizer_config.json").is_file() and (out / "config.json").is_file()


def test_export_of_a_missing_model_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "has no config.json: give a run directory" in capsys.readouterr().err


def test_a_mobilebert_student_exports_and_matches_eager(tmp_path, capsys):
    from bertpress.train.build import build_run

    teacher = save_tiny_teacher(tmp_path / "t", mlm=False, max_position_embeddings=128)
    run = build_run({"output_dir": str(tmp_path / "o"), "teacher": {"name_or_path": str(teacher)},
                     "student": {"architecture": "mobilebert", "init": "random", "architecture_options": {
                         "bottleneck": 16, "embedding_size": 8, "num_ffn": 2}},
                     "data": {"sources": ["x.txt"], "block_size": 32}})
    run.student.save_pretrained(tmp_path / "s")
    run.tokenizer.save_pretrained(tmp_path / "s")
    assert main(["export", str(tmp_path / "s"), "--seq-len", "24", "--rounds", "2"]) == 0
    report = json.loads((tmp_path / "s" / "onnx" / "export.json").read_text())
    assert report["parity_ok"]["onnx"] and report["parity_ok"]["onnx-optimized"]
    assert report["parity"]["onnx"]["max_abs_diff_b32"] <= 1e-4
