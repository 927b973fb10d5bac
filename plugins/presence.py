class PresencePlugin: pass
