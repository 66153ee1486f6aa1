"""The `gq` command line: commands and their exit codes (cli.py), `gq jobs` and how it shows
jobs (jobs_cli.py; remote_admin.py through a running daemon's API), `gq batch`
(batch.py), `gq echo` (echo.py), the generated references (reference.py).

Owns: nothing a daemon runs. May import: every wing. Imported by gq/__main__.py alone.
"""
