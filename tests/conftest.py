"""Shared fixtures. Test modules mirror the packages: tests/<package>/test_<module>.py."""
