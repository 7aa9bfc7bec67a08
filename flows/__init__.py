"""Prefect flows: they call components and DVC, nothing else."""

import os

# A flow run without PREFECT_API_URL starts Prefect's temporary server, which gets 20 s to answer; on a
# busy 2-core CI machine it took longer. Prefect reads this when it is imported, which every flow module
# does after this package's __init__.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
