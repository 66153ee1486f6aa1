"""Running gq as a service: the wiring of every part from a config (runtime.py), `gq run`
from start to drain (daemon.py), SIGHUP's reload (reload.py), signals as events
(signals.py), sd_notify, the watchdog and socket activation (systemd.py), the log's
formats (log.py).

Owns: the process's lifetime. May import: every wing below it (the console and down).
Imported by the commands alone.
"""
