"""Reading Parameter Golf training logs and record folders, as the competition's scripts write them.

- `pgolf.logs.parse`: one log's lines (training and validation steps, evaluation lines, sizes, the
  artifact) and its score by the score rule: `parse_line`, `parse_lines`, `parse_log`, `LogSummary`;
- `pgolf.logs.records`: a record folder's logs against its `submission.json` (`check_record`) and its
  per-seed scores (`record_scores`);
- `python -m pgolf.logs LOG...` and `python -m pgolf.logs check RECORD_DIR...` (`pgolf.logs.__main__`).
"""

from pgolf.logs.parse import (FinalScore, LogEvent, LogSummary, ModelParams, SerializedModel, SubmissionSize,
                              TotalEvalTime, TrainStep, TrainStop, ValStep, parse_line, parse_lines, parse_log)
from pgolf.logs.records import (RecordCheck, ScoresError, SeedScores, check_record, find_logs, listed_seeds,
                                record_scores)

__all__ = ["FinalScore", "LogEvent", "LogSummary", "ModelParams", "SerializedModel", "SubmissionSize",
           "TotalEvalTime", "TrainStep", "TrainStop", "ValStep", "parse_line", "parse_lines", "parse_log",
           "RecordCheck", "ScoresError", "SeedScores", "check_record", "find_logs", "listed_seeds", "record_scores"]
