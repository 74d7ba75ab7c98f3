"""Local development services (Azurite) shared by tests, benchmarks and make targets."""
