"""Seed descriptions: timestamped text of what is in each clip (the paper's format)."""
