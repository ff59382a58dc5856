"""The AOI conformance suite: judges an AOI Server or AOI Client through the wire only."""
