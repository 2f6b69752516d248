"""Baselines a distilled student is measured against, trained from scratch (not distilled): ``cvt`` (Cross-View
Training, a semi-supervised BiLSTM tagger)."""
