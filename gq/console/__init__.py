"""The operators' console under /ui/: server-rendered pages onto the jobs, served by the
daemon on api.listen (gq/console/app.py), reading and acting through the broker interface
as the API does (gq/console/views.py).

Owns: the sessions' key. May import: the intake's shared answers and operations, gq.observe
and below. Built by the daemon's wiring and handed to the intake's API.
"""
