"""What gq tells about itself: Prometheus metrics, read from the dispatcher's snapshot and
the broker's gauges and counted by observing each job (metrics.py); the process and its
loop lag (health.py); deliveries and failures per minute for the console (activity.py).

Owns: the metrics registry. May import: gq.dispatch and below. Imported by the intake
(/metrics), the console and the daemon.
"""
