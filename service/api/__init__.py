"""HTTP layer: routes per resource, dependencies in deps.py, request/response models in models.py."""
