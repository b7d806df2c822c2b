"""Evaluation against ground truth: agreement statistics and morphometry errors."""
