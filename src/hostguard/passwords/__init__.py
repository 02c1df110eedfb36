"""Offline password verification: hash schemes behind one interface, and the guesses to try."""
