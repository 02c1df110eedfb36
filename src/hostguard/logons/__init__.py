"""Logons: log sources, one parser per service family, and (later) the logon store.

The parse layer turns log lines into :class:`~hostguard.logons.events.LogonEvent` records, one per
authentication *attempt* (the ``hostguard logons parse`` contract in DESIGN.md). Detectors (brute force,
unusual logons) work on those events only, never on text, so a new log format or a new message variant is
a parser change and nothing else. Every ``service`` and ``method`` value and how each message is classified
is documented in ``docs/logons.md``.
"""
