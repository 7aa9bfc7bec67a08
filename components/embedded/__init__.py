"""The embedded default models, prepared from registry packages (no model hub)."""
