"""Push: rules (defaults, per-user changes, merging), and later their evaluation and pushers."""
