"""Shipped serializers: pickle, cloudpickle, dill, and `Signed` to wrap any of them."""

from kew_plug.serializers.framing import frame, unframe
from kew_plug.serializers.pickling import CloudpickleSerializer, DillSerializer, PickleSerializer
from kew_plug.serializers.signed import Signed

__all__ = [
    "CloudpickleSerializer",
    "DillSerializer",
    "PickleSerializer",
    "Signed",
    "frame",
    "unframe",
]
