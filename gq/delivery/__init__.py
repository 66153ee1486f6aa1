"""Delivery: one attempt's HTTP request, and how it leaves (transport.py: the session per
host, the egress guard, the proxy, TLS), what a target may send back (response_limits.py),
Standard Webhooks signatures (signing.py); [target] and [pool] declared (sections.py).

Owns: the connection pools. May import: gq.broker, gq.core, gq.errors. Imported by the
dispatch (an attempt) and above.
"""
