"""The broker contract (tests/support/broker_contract.py) on the Redis Streams broker, on a
real redis-server of the module's own (module_redis)."""

from support.broker_contract import contract

globals().update(contract("redis"))
