"""Predicted TDX measurements (L1): MRTD from TDVF firmware, RTMR0–2 events of a UKI boot, event-log replay.

Pure functions over bytes, one module per source of events; `predict_image` composes them. Nothing here
prints, spawns processes or guesses a value: missing inputs are listed in `Prediction.missing`.
"""

from __future__ import annotations

from tdxstore.measure.authenticode import authenticode_sha384
from tdxstore.measure.event import Event, Register, replay
from tdxstore.measure.eventlog import Difference, LogEvent, LogKind, compare, parse_event_log
from tdxstore.measure.predict import Prediction, predict_firmware, predict_image, require_complete, split_image
from tdxstore.measure.profile import Profile, builtin_profiles, load_profile
from tdxstore.measure.tdvf import PageAddOrder, compute_mrtd, parse_tdvf
from tdxstore.measure.uki import Uki, parse_uki

__all__ = [
    "Difference", "Event", "LogEvent", "LogKind", "PageAddOrder", "Prediction", "Profile", "Register", "Uki",
    "authenticode_sha384", "builtin_profiles", "compare", "compute_mrtd", "load_profile", "parse_event_log",
    "parse_tdvf", "parse_uki", "predict_firmware", "predict_image", "replay", "require_complete", "split_image",
]
