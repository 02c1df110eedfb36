"""File content scanning: YARA-X rules, hash IOCs, the scan cache, parallel workers, and the web-root watch."""
