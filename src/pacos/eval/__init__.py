"""Evaluation: verifiable task accuracy, and later judges and statistics."""
