"""Readable Dask cluster names: the user's own (the cluster option `cluster_name`) or two words.

dask-gateway names a cluster by a 32-digit hex id and has no labels or tags of its own, so the
readable name travels as a cluster option: the gateway stores validated options with the cluster,
and every client (panel, widget, `gateway().list_clusters()`) reads them back. An empty name is
replaced by two words when the gateway validates the options; clusters started before the option
existed get two words derived from their id (the same ones every time).
"""

from __future__ import annotations

import hashlib
import re
import secrets

FIELD = "cluster_name"
MAX_LENGTH = 40
_ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")

_ADJECTIVES = (
    "amber",
    "autumn",
    "brave",
    "bright",
    "calm",
    "clever",
    "coral",
    "crisp",
    "daring",
    "eager",
    "gentle",
    "golden",
    "happy",
    "hidden",
    "humble",
    "jolly",
    "keen",
    "lively",
    "lucky",
    "merry",
    "mighty",
    "misty",
    "noble",
    "patient",
    "polar",
    "proud",
    "quiet",
    "rapid",
    "silent",
    "silver",
    "steady",
    "sunny",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "wise",
    "witty",
)
_NOUNS = (
    "badger",
    "beaver",
    "bison",
    "crane",
    "dolphin",
    "eagle",
    "falcon",
    "ferret",
    "finch",
    "fox",
    "gecko",
    "heron",
    "ibis",
    "koala",
    "lemur",
    "lynx",
    "marten",
    "meerkat",
    "moose",
    "newt",
    "otter",
    "owl",
    "panda",
    "pelican",
    "puffin",
    "quail",
    "raven",
    "robin",
    "salmon",
    "seal",
    "sparrow",
    "stork",
    "swan",
    "tapir",
    "tern",
    "walrus",
    "wombat",
    "wren",
)


def _words(number: int) -> str:
    return f"{_ADJECTIVES[number % len(_ADJECTIVES)]}-{_NOUNS[(number // len(_ADJECTIVES)) % len(_NOUNS)]}"


def generated_name() -> str:
    """Two random words, e.g. 'swift-otter'."""
    return _words(secrets.randbelow(len(_ADJECTIVES) * len(_NOUNS)))


def name_of(cluster_id: str) -> str:
    """Two words derived from a cluster's id, for clusters without a `cluster_name` option."""
    return _words(int(hashlib.sha256(cluster_id.encode()).hexdigest()[:8], 16))


def display_name(options: dict | None, cluster_id: str) -> str:
    """The name a person sees for a cluster: its `cluster_name` option, or two words from its id."""
    given = (options or {}).get(FIELD)
    return given if isinstance(given, str) and given else name_of(cluster_id)


def checked_name(value: object) -> str:
    """A user-given name, stripped; a generated one when empty; ValueError naming the rule otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{FIELD} must be text, got {value!r}")
    name = value.strip()
    if not name:
        return generated_name()
    if len(name) > MAX_LENGTH or not _ALLOWED.fullmatch(name):
        raise ValueError(
            f"{FIELD}: {name!r} is not a usable name; use up to {MAX_LENGTH} letters, digits, spaces, "
            "'-', '_' or '.', starting with a letter or digit"
        )
    return name
