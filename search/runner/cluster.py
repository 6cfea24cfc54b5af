"""Ray for the search: joining a cluster or starting one in the driver, and what one trial holds."""

from __future__ import annotations

import logging
import os
from typing import Mapping

from pgolf.cluster import join_cluster


def _not_incomplete_trials(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Trials did not complete")


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
              object_store_memory: int | None = None) -> bool:
    """Join the cluster at `address`, or start an embedded one; True when this call started Ray.

    Ray's own console output is quietened: the search prints its own progress.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # a failed trial is one progress line with its root cause: no traceback per trial from Tune, no
    # "unhandled error" for a stopped trial's result, no closing list of the trials that failed
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    logging.getLogger("ray.tune.tune").addFilter(_not_incomplete_trials)
    kwargs = dict(log_to_driver=False, logging_level="ERROR", configure_logging=True)
    if address:
        join_cluster(address, **kwargs)
    else:
        # address "local": always a new cluster, never one a past `ray start` left in /tmp/ray
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 object_store_memory=object_store_memory, **kwargs)
    return True


def trial_resources(gpus_per_trial: int, cpus_per_trial: int = 1, custom: Mapping[str, float] | None = None):
    """What to pass to `tune.with_resources` for one trial (one bundle, one node); `custom`: the
    space's RESOURCES_PER_TRIAL (nodes started with `ray start --resources`)."""
    from ray.tune import PlacementGroupFactory

    bundle: dict[str, float] = {"CPU": max(1, int(cpus_per_trial)), **(custom or {})}
    if gpus_per_trial > 0:
        bundle["GPU"] = int(gpus_per_trial)
    return PlacementGroupFactory([bundle])
