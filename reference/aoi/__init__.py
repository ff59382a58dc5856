"""Reference AOI Server and AOI Client: a protocol core without I/O and thin trio shells."""

__version__ = "0.1.0"
