"""The intake: the HTTP API on api.listen. The listening sockets (listeners.py) and gevent's
WSGI server bounded against slow clients (http_server.py) hand each request to the API
(api.py: routing, refusals naming the field, health, /metrics), which submits jobs through
admission and asks the broker for look-ups, pages, cancels and replays (jobs_api.py);
api_io.py holds what every endpoint shares, access.py who is asking; openapi.json
describes it all.

Owns: the listening sockets. May import: gq.observe, gq.config and below. The console
stands above it and is handed in (api.Pages), never imported.
"""
