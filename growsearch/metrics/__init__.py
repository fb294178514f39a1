"""Metrics: EER and min t-DCF (official ASVspoof semantics), score files, model cost."""
