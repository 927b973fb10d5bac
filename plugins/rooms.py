class RoomsPlugin: pass
