"""Model lifecycle: the model bundle, fitting and evaluating detectors on a stream's
windows, the promotion gate, the MLflow registry, and figures. Never uses evaluation/."""
