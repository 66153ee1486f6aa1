# Patch before anything imports socket, ssl, threading or requests: `requests`
# is only cooperative if it is built on gevent's socket. Both `python -m gq`
# and the `gq` console script enter here.
from gevent import monkey

monkey.patch_all()

import faulthandler  # noqa: E402

# A crash in C code (SQLite, a driver) leaves every thread's stack on stderr, in the journal.
faulthandler.enable()

from gq.commands.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
