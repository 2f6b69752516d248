"""NAS-BERT: one supernet distillation, a family of students for every size and latency budget."""
