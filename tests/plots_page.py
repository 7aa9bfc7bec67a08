"""`dvc plots show` as a user on an offline machine sees it: DVC writes the page, headless Chromium
(Debian's `chromium`, installed at set-up) loads it with every network request refused, and we read
what it drew (the DOM after its scripts ran, and a screenshot)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, VENV_BIN

CHROMIUM = ("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=8000")  # a dead proxy: no network


def plots_workspace(root: Path, files: dict[str, Path]) -> Path:
    """A DVC repo at `root` with the product's dvc.yaml, params.yaml and plot templates, its config
    pointing at the offline page built at set-up, and `files` ({path in the repo: source}) copied in."""
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([str(VENV_BIN / "dvc"), "init", "-q"], cwd=root, check=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots")
    template = REPO / "infra" / "plots" / "offline.html"
    assert template.is_file(), "infra/plots/offline.html missing: `make setup` builds it"
    with (root / ".dvc" / "config").open("a") as f:
        f.write(f"[plots]\n    html_template = {template}\n")
    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    return root


def show(root: Path, *args: str) -> Path:
    """`dvc plots show` in `root`; the page it wrote."""
    done = subprocess.run([str(VENV_BIN / "dvc"), "plots", "show", "-o", "page", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return root / "page" / "index.html"


def drawn(page: Path) -> tuple[int, float]:
    """(charts Vega drew with a size, share of the screenshot's pixels that are not white) with no network.
    A plot whose file is absent (here: training's loss) gets an empty 0 x 0 chart."""
    dom = subprocess.run([*CHROMIUM, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    shot = page.with_name("shot.png")
    subprocess.run([*CHROMIUM, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    sizes = re.findall(r'aria-label="Vega visualization"[^>]*><canvas width="(\d+)" height="(\d+)"', dom.stdout)
    return sum(int(w) > 0 and int(h) > 0 for w, h in sizes), float((pixels.min(axis=-1) < 0.9).mean())
