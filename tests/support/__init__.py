"""Test support shared by the unit, integration and end-to-end tests (never imported by the product)."""
