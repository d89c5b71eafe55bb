"""Build and run the reference Spleeter 2.4.2 in its own venv, for parity fixtures."""
