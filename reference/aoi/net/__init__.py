"""Thin trio shells over h11 and wsproto: one listener for HTTP and WebSocket, and a client."""
