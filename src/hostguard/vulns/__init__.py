"""Vulnerabilities: installed packages matched against OSV advisories, offline, in each ecosystem's version order."""
