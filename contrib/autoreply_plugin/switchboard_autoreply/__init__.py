"""A second example of a third-party Switchboard plugin: automatic replies in chat."""

from .plugin import AutoReplyPlugin, AutoReplySettings

__all__ = ["AutoReplyPlugin", "AutoReplySettings"]
