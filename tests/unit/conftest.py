"""Unit tests: no network, no AWS emulator, no Spark."""
