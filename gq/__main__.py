# Patch before anything imports socket, ssl, threading or requests: `requests`
# is only cooperative if it is built on gevent's socket. Both `python -m gq`
# and the `gq` console script enter here.
from gevent import monkey

monkey.patch_all()

from gq.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
