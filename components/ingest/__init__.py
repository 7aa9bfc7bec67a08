"""Corpus ingestion: one adapter per source kind."""
