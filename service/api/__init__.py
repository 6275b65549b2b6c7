"""HTTP layer: routes, request/response models and problem+json errors."""
