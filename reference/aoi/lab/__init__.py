"""``aoi lab``: the reference AOI Servers a conformance run needs, as external processes.

One command starts the minimum set of server instances that the conformance suite's
profiles describe (docs/conformance.md, "A lab of reference servers"), each configured for
its scenarios, and writes the IXIT that describes them, so that

    aoi lab --dir lab
    pytest conformance --ixit lab/ixit.toml

certifies the reference the way a vendor certifies a server. :mod:`aoi.lab.plan` decides
what to start (configurations, policy documents, the IXIT) without any I/O;
:mod:`aoi.lab.supervisor` starts, watches, restarts and stops the processes, and
:mod:`aoi.lab.run` is the ``aoi lab`` command around it. The suite's embedded
run (``pytest conformance`` without a target) is this lab, started by the suite: the
reference's test configuration has this one home.
"""
