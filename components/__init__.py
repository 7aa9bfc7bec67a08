"""DeSTA2.5-Audio pipeline components: one module per concern, no Prefect or DVC inside."""
