"""Wire drivers: the suite's own AOI-2 WebSocket client and AOI-3 HTTP client.

Written from the schemas and docs/protocol.md only; they share nothing with reference/.
"""
