"""The application the Socket.IO protocol's test suite expects of a server."""
