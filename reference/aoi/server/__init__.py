"""The reference AOI Server: configuration, authentication, and the trio shell around the
protocol core."""
