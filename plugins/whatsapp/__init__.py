"""WhatsApp: sessions (numbers) of two providers, their QR codes and states
live, and WhatsApp as a channel into the chat plugin's conversations, with a
durable send outbox. See docs/plugins/whatsapp.md."""

from .plugin import WhatsAppPlugin

__all__ = ["WhatsAppPlugin"]
