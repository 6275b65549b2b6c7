"""The OpenAPI document: its description, security schemes, rules and every endpoint's example."""
