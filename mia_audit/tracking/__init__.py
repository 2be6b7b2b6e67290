"""Where a finished audit is recorded besides its report folder: MLflow (`mlflow_log`)."""
