"""The shipped Serializer contract (harness.contract.serializer) on every shipped serializer
and Signed over the two by-value ones (tests/contract/conftest.py)."""

from harness.contract.serializer import *  # noqa: F403
