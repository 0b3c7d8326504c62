"""Agent decisions before a launch: request routing and the AutoML policy."""
