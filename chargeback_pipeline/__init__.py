"""Chargeback pipeline."""
