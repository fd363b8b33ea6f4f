"""Write DVC's --html-template for plots that render offline: .dvc/plots/offline.html with
Vega, Vega-Lite and Vega-Embed inlined.

DVC's default page loads the three libraries from a CDN, so without a network every Vega plot
is blank. The libraries come from the vl-convert-python package (a project dependency, built
by the Vega team): ``vl_convert.javascript_bundle`` returns them as one classic script that
defines ``vega``, ``vegaLite`` and ``vegaEmbed``, the names DVC's plot divs call. Vega-Lite 5,
the version of DVC's templates' ``$schema``.

Usage: python scripts/offline_plots_template.py [SKELETON] [OUTPUT]
(defaults .dvc/plots/offline.html and .dvc/tmp/plots_offline.html; `make plots` runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import vl_convert

from cifarlab import io

MARKER = "/* VEGA_BUNDLE */"
VEGA_LITE = "5.21"  # the newest 5.x vl-convert ships; DVC's templates are Vega-Lite v5


def offline_page(skeleton: str) -> str:
    """The skeleton (an HTML template with DVC's {plot_divs} and one MARKER) with the bundle
    in place of MARKER."""
    if skeleton.count(MARKER) != 1 or "{plot_divs}" not in skeleton:
        raise SystemExit(f"plots page skeleton: needs {{plot_divs}} and one {MARKER}")
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    # Inside <script>, "</script" would end the element early.
    return skeleton.replace(MARKER, bundle.replace("</script", "<\\/script"))


def main(argv: list[str]) -> None:
    skeleton = Path(argv[0] if argv else ".dvc/plots/offline.html")
    output = Path(argv[1] if len(argv) > 1 else ".dvc/tmp/plots_offline.html")
    page = offline_page(skeleton.read_text(encoding="utf-8"))
    io.write_text(output, page)  # atomic: a failed run leaves no half page
    print(f"{output}: DVC plots page with Vega inlined ({len(page) >> 10} KiB)")


if __name__ == "__main__":
    main(sys.argv[1:])
