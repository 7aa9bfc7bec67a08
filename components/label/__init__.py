"""Self-generated labelling: the backbone LLM answers `seed description + instruction`; its answer
becomes the training target for `audio + instruction` (DeSTA-AQA5M rows). See run.py."""
