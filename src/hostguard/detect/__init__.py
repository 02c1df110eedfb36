"""Stateful detectors fed by events (DESIGN: brute force, logon baseline; later downloads, connections).

One module per detector, each ``detect(event, state, ctx) -> list[Raised]`` over its own ``State``; their
thresholds, windows and group-by are the ``[detect]`` config section (:mod:`.config`), their severities and
summaries data (``data/detect/detectors.toml``). :mod:`.runner` holds the loop's one step
(:class:`~hostguard.detect.runner.Pipeline`), so ``logons ingest`` and the ``follow`` daemon run the same code.
"""
