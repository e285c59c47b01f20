"""facility.yaml: the single description of the analysis facility."""

from facility.loader import FacilityError, current, default_path, embedded_default_path, from_dict, load, loads
from facility.model import Backend, Facility, Image, Range
from facility.validation import RequestError, SpawnRequest, validate_spawn

__all__ = [
    "Backend",
    "Facility",
    "FacilityError",
    "Image",
    "Range",
    "RequestError",
    "SpawnRequest",
    "current",
    "default_path",
    "embedded_default_path",
    "from_dict",
    "load",
    "loads",
    "validate_spawn",
]
