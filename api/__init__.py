"""HTTP plumbing: route declaration and validation, request and reply models, error codes."""
