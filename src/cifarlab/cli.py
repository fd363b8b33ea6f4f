"""Entry point for the stage scripts: one-line errors, MLflow runs ended as KILLED on signals."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from cifarlab.errors import CifarlabError


def _sigterm_as_interrupt(signum: int, frame: object) -> NoReturn:
    # `dvc` and process managers stop a stage with SIGTERM; raising KeyboardInterrupt lets every
    # `with` block unwind: temporary files are removed and the MLflow run is ended as KILLED.
    raise KeyboardInterrupt(f"signal {signum}")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; turn expected failures into a short message and an exit code."""
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        main()
    except CifarlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        sys.exit(130)
