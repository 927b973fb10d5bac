"""The schema history of the presence plugin."""
