"""Request and response payload formats: JSON, OIP tensors, binary tensors, npz, SVG."""
