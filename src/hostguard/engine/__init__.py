"""The check registry, the runner and suppression: the only code that knows every check."""
