"""torchrun (`torch.distributed.run`, same arguments) without its own traceback when a rank fails: the
rank reports why (its errors/rank<N>.json) and `desta train` says that in one line."""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main

if __name__ == "__main__":
    try:
        main()
    except ChildFailedError:
        sys.exit(1)
