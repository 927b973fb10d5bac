"""The schema history of the handover plugin."""
