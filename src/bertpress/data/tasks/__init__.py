"""Readers of downstream task data: GLUE TSVs (or the hub), SQuAD JSON, CoNLL column files."""
