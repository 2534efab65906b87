"""Orchestration: each module runs one job and assembles its result.

- ``investigate``: ``run_investigation()`` for ``investigate``, ``run`` and ``scan --investigate-top``;
- ``trace``: ``run_trace()`` for ``trace``;
- ``tracefeed``: trace text through the parsers into ``analyze.trace.TraceMatcher`` (``import``'s loop),
  and ``build_result()`` shared by ``trace`` and ``import``;

Live jobs drive a probe through ``leakhunt.probe.live.run_live``; results are model types, which
``leakhunt.cli`` prints and ``leakhunt.report`` renders. The CLI only parses options and prints.
"""
