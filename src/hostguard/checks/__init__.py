"""Posture checks, one module per family. Each check is a pure function of declared host facts."""
