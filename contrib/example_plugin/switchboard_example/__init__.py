"""An example third-party Switchboard plugin: help requests from customers to agents."""

from .plugin import HelpRequestPlugin, HelpSettings

__all__ = ["HelpRequestPlugin", "HelpSettings"]
