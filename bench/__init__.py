"""EDL's performance benchmarks: `python -m bench [deploy|sceptre|validate ...]` (see README.md)."""
