"""Store and breaker implementations, imported by name through the kew_plug registry."""
