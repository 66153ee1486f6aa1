"""Dispatch: from the broker to a worker and back. The dispatcher's loops (dispatcher.py)
take due jobs into the bounded queue (job_queue.py), park those whose host is busy
(parking.py, destinations.py: per-host caps, rates, circuits, pauses), run each in the
bounded pool (workers.py) as one attempt (attempts.py), settle the outcome with the broker
and tell the observers (observers.py). Admission (admission.py) is how a new job gets in.

Owns: the queue, the pool, the destinations' state. May import: gq.delivery, gq.broker,
gq.core, gq.errors. Imported by gq.config (its [destinations]), the observers above, the
intake, the console and the daemon.
"""
