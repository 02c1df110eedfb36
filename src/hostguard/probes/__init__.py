"""Active probes: trying passwords against this host's own services (issue 10, "weak service passwords").

Not pure checks (DESIGN, "Active probes"): they talk to a live server, so they live apart from ``checks/``,
only ever over loopback or a unix socket, rate-limited, capped per account below the service's lockout
counter, canary first, and every session is recorded in state.db so hostguard's own logon detectors can tell
its guesses from an attacker's. A found password is never printed or stored: a result carries the account,
the guess's rank and how many guesses were tried.
"""
