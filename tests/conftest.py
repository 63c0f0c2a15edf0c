"""Suite-wide settings: hypothesis is derandomised so every run tests the same examples."""

from hypothesis import settings

settings.register_profile("segbalance", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("segbalance")
