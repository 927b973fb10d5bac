"""The schema history of the desk plugin."""
