"""`python -m gq`, with the Metrics observer's job-path methods (accepted, dequeued,
attempted) replaced by no-ops: gq as shipped, less what its metrics cost per job.

    python bench/gq_without_metrics.py batch -c CONFIG JOBS

bench/bench.py's scenario "metrics" runs `gq batch` this way and as shipped. gq is not
changed: the methods are replaced on the class once imported. The observer is still
built, registered and called by the dispatcher; only its bodies are gone. `gq batch -p N`
would start its parts as `python -m gq`, with metrics: use it with one process only.
"""

# As gq/__main__.py: patch before anything imports socket, ssl, threading or requests.
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import gq.observe.metrics  # noqa: E402
from gq.commands.cli import main  # noqa: E402


def _nothing(self, *args) -> None:
    """What a Metrics observer method does here."""


for _name in ("accepted", "dequeued", "attempted"):
    setattr(gq.observe.metrics.Metrics, _name, _nothing)

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
