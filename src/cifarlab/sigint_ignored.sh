#!/bin/sh
# The Python of a spawned worker process, started with SIGINT ignored from its first instruction
# (see cifarlab.process.start_without_sigint): an ignored signal stays ignored across exec, and
# Python then installs no SIGINT handler of its own.
trap '' INT
exec "$CIFARLAB_WORKER_PYTHON" "$@"
