"""Thin trio shells: one listener for HTTP (llhttp) and WebSocket, and a client (h11)."""
