"""The schema history of the whatsapp plugin."""
