"""pacos: the Stanford Alpaca recipe end to end (data, fine-tuning, serving, export, evaluation)."""

__version__ = "0.1.0"
