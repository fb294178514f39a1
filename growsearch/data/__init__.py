"""Datasets, the generated corpus and the front-ends."""
