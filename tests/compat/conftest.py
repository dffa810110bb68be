from compat._compat import engine  # noqa: F401  (the fixture, for every test in this folder)
