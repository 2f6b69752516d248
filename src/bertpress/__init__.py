"""bertpress: task-agnostic knowledge distillation of BERT-family encoders into small, fast students."""

__version__ = "0.1.0"
