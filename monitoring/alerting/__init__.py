"""Online alerting: incremental scoring of new windows with the champion, and merging
flagged windows into incidents."""
