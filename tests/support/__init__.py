"""Test support: builders, reference material and shared fixtures, imported as `support.<module>` (pyproject's
pytest `pythonpath` puts tests/ on sys.path). Test files import from here or take conftest fixtures, never from
another test_*.py."""
