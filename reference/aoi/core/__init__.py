"""The AOI protocol core: messages, codec, session state machines, reallocation.

Nothing here does I/O or reads a clock: bytes, messages and the current time go in,
messages and decisions come out.
"""
