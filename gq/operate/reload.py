"""SIGHUP: the config file read again, as much of it as a running gq can apply."""

from __future__ import annotations

import dataclasses
import logging

from gq import config as config_
from gq.config import Config
from gq.errors import ConfigError

log = logging.getLogger("gq")

# Keys a reload cannot apply to a running process (declared `live=False`): they keep their
# value until a restart.
RESTART_ONLY = tuple((section, f.name) for section, cls in config_.SECTIONS.items()
                     for f in dataclasses.fields(cls) if not f.metadata["live"])


def reloaded(current: Config) -> tuple[Config, list[str]]:
    """The config as it can be applied now, and the keys ("section.key") it changes.
    A key that needs a restart keeps its value (a warning says so). Raises ConfigError
    naming each problem: the running config then stays as it is."""
    new = config_.load(current.source or None)
    for section, key in RESTART_ONLY:
        old_value, new_value = getattr(getattr(current, section), key), getattr(getattr(new, section), key)
        if old_value != new_value:
            log.warning("reload: %s.%s changed, but needs a restart: still %s", section, key,
                        config_.shown_key(current, section, key))
            new = dataclasses.replace(new, **{section: dataclasses.replace(
                getattr(new, section), **{key: old_value})})
    broken = config_.cross_checks(new)  # as applied: a kept public listen still needs its token
    if broken:
        raise ConfigError([f"{new.source}: {problem} (api.listen is kept until a restart)" for problem in broken])
    changed = [f"{s}.{k}" for s in config_.SECTIONS for k in config_.keys(s)
               if getattr(getattr(current, s), k) != getattr(getattr(new, s), k)]
    return new, changed
