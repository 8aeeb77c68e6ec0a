"""One module per paper section: its preset configs and the claims it checks (layer 3)."""
