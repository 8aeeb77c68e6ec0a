"""One module per paper section: its preset configs and the claims it checks (layer 3)."""

EXPERIMENT_NAMES: tuple[str, ...] = ("intro",)
"""The experiments ``superposition reproduce`` knows, in the paper's order."""
