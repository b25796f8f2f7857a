"""Sandbox stand-ins for the outside world: FHIR hospital records, a payment provider."""
