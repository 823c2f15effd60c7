"""Shipped serializers: pickle, cloudpickle, dill, and `Signed` to wrap any of them."""

from serializers.framing import frame, unframe
from serializers.pickling import CloudpickleSerializer, DillSerializer, PickleSerializer
from serializers.signed import Signed

__all__ = [
    "CloudpickleSerializer",
    "DillSerializer",
    "PickleSerializer",
    "Signed",
    "frame",
    "unframe",
]
