"""The reference AOI Client: one AOI-2 session per AOI Server, shared by the apps on AOI-1.

A thin trio shell around the protocol core: :mod:`aoi.core.client_session` runs each
session, :mod:`aoi.core.reallocation` decides where each group of apps is served, and the
modules here move frames, time and decisions between them.
"""
