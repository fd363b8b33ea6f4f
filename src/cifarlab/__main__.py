"""``python -m cifarlab`` is the ``cifarlab`` command."""

from cifarlab.cli import main

main()
