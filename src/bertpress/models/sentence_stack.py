"""Give a student its teacher's sentence-transformers module stack, so ``SentenceTransformer(student_dir)`` pools,
normalises and truncates the way the teacher does (without it, sentence-transformers silently falls back to mean
pooling, no normalisation and 512 tokens).

Copied: ``modules.json``, ``sentence_bert_config.json`` (``max_seq_length``), ``config_sentence_transformers.json``
and each module's folder (Pooling's ``word_embedding_dimension`` set to the student's width; Normalize has no
weights). A stack with trained modules after the encoder (Dense, ...) cannot be carried over to a new encoder and
is left out, with a warning.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from bertpress.models.pooling import POOLING_MODULE

log = logging.getLogger(__name__)

_ENCODER = "sentence_transformers.models.Transformer"
_NORMALIZE = "sentence_transformers.models.Normalize"
_TOP_FILES = ("sentence_bert_config.json", "config_sentence_transformers.json")


def local_model_dir(source: str, revision: str | None = None) -> Path | None:
    """The directory holding ``source``'s files: itself when local, its hub cache snapshot when downloaded."""
    if Path(source).expanduser().is_dir():
        return Path(source).expanduser()
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source, "modules.json", revision=revision)
    return Path(found).parent if isinstance(found, str) else None


def copy_sentence_stack(teacher_dir: Path, student_dir: Path, hidden_size: int) -> bool:
    """Write the teacher's sentence-transformers stack into ``student_dir``; ``False`` when the teacher has none
    (or one that cannot be carried over)."""
    teacher_dir, student_dir = Path(teacher_dir), Path(student_dir)
    modules_file = teacher_dir / "modules.json"
    if not modules_file.is_file():
        return False
    modules = json.loads(modules_file.read_text())
    foreign = [m.get("type") for m in modules if m.get("type") not in (_ENCODER, POOLING_MODULE, _NORMALIZE)]
    if foreign:
        log.warning("teacher's sentence-transformers stack has trained modules (%s): the student gets none of it "
                    "(load it with AutoModel, or add those modules yourself)", ", ".join(map(str, foreign)))
        return False
    for m in modules:
        path = m.get("path", "")
        if not path:
            continue
        src, dst = teacher_dir / path, student_dir / path
        dst.mkdir(parents=True, exist_ok=True)
        if m["type"] == POOLING_MODULE:
            config = json.loads((src / "config.json").read_text())
            config["word_embedding_dimension"] = hidden_size
            (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        elif src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        # (Normalize's folder may be absent: it has nothing to load)
    shutil.copyfile(modules_file, student_dir / "modules.json")
    for name in _TOP_FILES:
        if (teacher_dir / name).is_file():
            shutil.copyfile(teacher_dir / name, student_dir / name)
    return True
