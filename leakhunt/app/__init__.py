"""Orchestration: each module runs one job and assembles its result.

- ``investigate``: ``run_investigation()`` for ``investigate``, ``run`` and ``scan --investigate-top``;
- ``trace``: ``run_trace()`` for ``trace``, and ``build_result()`` shared with ``import``;
- ``tracefeed``: trace text through the parsers into ``analyze.trace.TraceMatcher`` (``import``'s loop);

Live jobs drive a probe through ``leakhunt.probe.live.run_live``; results are model types, which
``leakhunt.cli`` prints and ``leakhunt.report`` renders. The CLI only parses options and prints.
"""
