"""The repairs that keep a positive schemathesis case within the rules JSON Schema cannot state (see
tests.contract.hooks)."""
