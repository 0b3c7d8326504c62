"""Pictures: the training curve (and, next, detections and studies)."""
