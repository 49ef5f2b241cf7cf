"""Functional tests: AWS faked in-process with moto, commands run in-process."""
