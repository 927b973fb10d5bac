"""WhatsApp: sessions (numbers) of two providers, their QR codes and states
live, and WhatsApp as a channel into the chat plugin's conversations, with a
durable send outbox. See the README's "WhatsApp plugin"."""

from .plugin import WhatsAppPlugin

__all__ = ["WhatsAppPlugin"]
