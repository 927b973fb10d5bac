"""The schema history of the pipeline plugin."""
