"""The schema history of the notifications plugin."""
