"""Human annotations: durable versions, export formats, labels and the merge rule."""
