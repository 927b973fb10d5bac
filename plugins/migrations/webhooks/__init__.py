"""The schema history of the webhooks plugin."""
