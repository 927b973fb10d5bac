"""The schema history of the chat plugin."""
