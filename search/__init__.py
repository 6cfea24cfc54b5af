"""The search service: Optuna-driven, Ray-distributed, constraint-aware hyperparameter search."""
