"""Prefect flows: they call components and DVC, nothing else."""
