"""The words every wing shares: a job (job.py) and the hosts it may reach (hosts.py), its
life (lifecycle.py: what each event does to it), what a result means (outcome.py) and when
to try again (retry.py); how a setting is declared (settings.py, toml_text.py,
credentials.py); the one rule by which a secret is shown (redaction.py); the operators'
actions recorded (audit.py); long-lived loops, owned and restarted (supervisor.py).

Owns: nothing that runs by itself. May import: gq.errors and the standard library's
kind of thing (no wing). Every other wing may import it.
"""
