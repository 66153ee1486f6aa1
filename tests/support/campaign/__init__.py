"""A fault campaign: gq run for a bounded time under a seeded random sequence of faults while a
producer drives it through the API, then a checker that proves nothing was lost.

plan.py      the faults drawn from the seed          world.py    the processes (node.py, disk.py)
faults.py    each fault made real, and undone        jobs.py     the jobs the producer sends
producer.py  submit, cancel, replay through the API  records.py  what gq answered
evidence.py  the API's views and the target's log    checker.py  rules 1-4; ledger.py rule 5
campaign.py  one run, start to report
"""
