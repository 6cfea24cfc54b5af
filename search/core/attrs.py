"""Every key the search writes on an Optuna trial or study, and every reason a trial ends for.

One owner, so that a reader of `trials.csv`, the dashboard or a test finds each name once: the
searcher, the study, warm starts, the ladder and the review all spell them through these constants.
"""

from __future__ import annotations

# -- trial attributes (Optuna user attributes)
ENV = "env"                          # the trial's full environment (search.space.SpaceSpec.trial_env)
TRIAL_DIR = "trial_dir"              # its folder, results/<name>/trials/<number>
LAUNCHED = "launched"                # True once handed to Ray: a training, not a proposal
TUNE_TRIAL_ID = "tune_trial_id"
REASON = "reason"                    # why it is not a plain COMPLETE result (one of the reasons below)
MESSAGE = "message"                  # the script's own root cause, for a failed one
LOG_TAIL = "log_tail"
WARNING = "warning"                  # a seed point run although predicted over budget
PREDICTED_BYTES = "predicted_bytes"  # the byte predictor's prediction before launch
MARGIN_BYTES = "margin_bytes"        # and its safety margin
SEED_POINT = "seed_point"            # a POINTS_TO_EVALUATE entry
FIDELITY = "fidelity"                # the rung of a fidelity ladder it trained at
PROMOTED_FROM = "promoted_from"      # the lower-rung trial it was promoted from
REQUEUED_FROM = "requeued_from"      # a run again of that trial (interrupted, node lost)
REQUEUED_BECAUSE = "requeued_because"
LOST_IN_A_ROW = "lost_in_a_row"      # node losses of these parameters in a row
NODE = "node"                        # the Ray node that ran it
IMPORTED_FROM = "imported_from"      # --warm-start: `<experiment>#<number>` or `record <folder> (N seeds)`
DUPLICATE_OF = "duplicate_of"        # a repeated proposal told that training's result, never trained
UNJUDGED_LIMITS = "unjudged_limits"  # limits on figures the script did not report
METRICS = ("val_loss", "bytes_code", "bytes_model", "steps", "train_seconds", "eval_seconds",
           "gpu_seconds", "wall_seconds", "prep_seconds", "log_path", "score_label")  # a finished training's

# -- study attributes
# every proposal pruned before launch judged again by the predictor as it is now:
# {trial number: [predicted bytes, margin bytes, violation]} (search.engine.samplers.rejudge_pruned)
REJUDGED = "rejudged_pruned"
STOPPED_SEARCH = "stopped_search_trials"  # failures that stopped a search: not trainings done

# -- reasons (the REASON attribute)
OVER_BUDGET_PREDICTED = "over_budget_predicted"  # pruned before launch: predicted + margin > budget
DUPLICATE_OF_IMPORTED = "duplicate_of_imported"  # pruned before launch: a point --warm-start imported
EARLY_STOPPED = "early_stopped"                  # stopped by the scheduler (PRUNED)
INTERRUPTED = "interrupted"                      # the driver stopped under it: it runs again
NODE_LOST = "node_lost"                          # its Ray worker or node died: it runs again
CRASHED = "crashed"
NAN_LOSS = "nan_loss"
TIMEOUT = "timeout"
DISK_FULL = "disk_full"
MISSING_DATA = "missing_data"
DUPLICATE = "duplicate"                          # a repeat of a training that ended without a result
RUN_AGAIN = (INTERRUPTED, NODE_LOST)             # reasons whose parameters are queued again
