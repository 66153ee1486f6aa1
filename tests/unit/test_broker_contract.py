"""The broker contract (tests/support/broker_contract.py) on the brokers of this process:
memory only and the embedded journal."""

from support.broker_contract import contract

globals().update(contract("memory", "journal"))
