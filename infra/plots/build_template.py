"""Write infra/plots/offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined from
node_modules (`npm ci` at set-up), so `dvc plots show` renders on a machine without a network.
.dvc/config points `plots.html_template` at it. DVC fills `{plot_divs}`; the page has no `{scripts}`
placeholder, so DVC's CDN script tags are left out."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js")
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
%s
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main() -> int:
    parts = []
    for rel in SCRIPTS:
        path = HERE / "node_modules" / rel
        if not path.is_file():
            print(f"error: {path} missing: run `npm ci --prefix {HERE}` first", file=sys.stderr)
            return 1
        js = path.read_text(encoding="utf-8")
        if "</script" in js or "{plot_divs}" in js:  # would end the inline script or take DVC's plots
            print(f"error: {rel} cannot be inlined", file=sys.stderr)
            return 1
        parts.append(f"    <script>/* {rel} */\n{js}\n    </script>")
    out = HERE / "offline.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(PAGE % "\n".join(parts), encoding="utf-8")
    os.replace(tmp, out)  # a half-written page is never read as the template
    return 0


if __name__ == "__main__":
    sys.exit(main())
