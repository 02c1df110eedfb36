"""Vulnerabilities: OSV advisories matched against installed packages, offline."""
