"""Structural tests of infra/bicep and infra/terraform (parsed, never deployed)."""
